use super::*;

fn device_form(name: Option<&str>, os: Option<&str>) -> DeviceCodeForm {
    DeviceCodeForm {
        client_id: Some(AGENT_CLIENT_ID.to_owned()),
        scope: None,
        device_name: name.map(str::to_owned),
        device_os: os.map(str::to_owned),
    }
}

fn token_form(grant: Option<&str>, code: Option<&str>, client: Option<&str>) -> TokenForm {
    TokenForm {
        grant_type: grant.map(str::to_owned),
        device_code: code.map(str::to_owned),
        client_id: client.map(str::to_owned),
    }
}

#[test]
fn only_the_agents_client_id_is_accepted() {
    assert_eq!(device_form(None, None).check_client(), Ok(()));
    for client in [
        None,
        Some(""),
        Some("katachi-agent "),
        Some("KATACHI-AGENT"),
    ] {
        let form = DeviceCodeForm {
            client_id: client.map(str::to_owned),
            ..device_form(None, None)
        };
        assert_eq!(form.check_client(), Err(DeviceFormError::UnknownClient));
    }
}

#[test]
fn device_fields_are_trimmed_and_empty_ones_get_the_fallback() {
    let device = device_form(Some("  laptop \t"), Some(""))
        .into_device()
        .unwrap();
    assert_eq!(device.device_name, "laptop");
    assert_eq!(device.device_os, UNKNOWN_OS);
    let device = device_form(None, Some("  ")).into_device().unwrap();
    assert_eq!(device.device_name, UNNAMED_DEVICE);
    assert_eq!(device.device_os, UNKNOWN_OS);
}

#[test]
fn device_fields_are_bounded_in_characters_not_bytes() {
    let hundred = "é".repeat(MAX_DEVICE_FIELD);
    assert!(device_form(Some(&hundred), None).into_device().is_ok());
    let more = "é".repeat(MAX_DEVICE_FIELD + 1);
    assert_eq!(
        device_form(Some(&more), None).into_device().unwrap_err(),
        DeviceFormError::DeviceFieldTooLong
    );
}

#[test]
fn control_separator_and_direction_characters_in_device_fields_are_refused() {
    for bad in [
        "a\nb",
        "a\rb",
        "\u{1b}[31mred",
        "a\u{0}b",
        "a\u{85}b",
        "a\u{2028}b",
        "a\u{2029}b",
        "laptop\u{202E}exe.txt",
        "\u{2067}evil\u{2069}",
        "a\u{200F}b",
        "a\u{061C}b",
    ] {
        assert_eq!(
            device_form(Some("ok"), Some(bad))
                .into_device()
                .unwrap_err(),
            DeviceFormError::DeviceFieldControl,
            "{bad:?}"
        );
    }
}

#[test]
fn the_name_is_checked_before_the_os() {
    let long = "x".repeat(MAX_DEVICE_FIELD + 1);
    assert_eq!(
        device_form(Some(&long), Some("a\nb"))
            .into_device()
            .unwrap_err(),
        DeviceFormError::DeviceFieldTooLong
    );
}

#[test]
fn a_token_request_is_checked_grant_then_client_then_code() {
    let g = Some(DEVICE_CODE_GRANT);
    let c = Some(AGENT_CLIENT_ID);
    assert_eq!(
        token_form(Some("password"), None, None).into_device_code(),
        Err(DeviceFormError::UnsupportedGrant)
    );
    assert_eq!(
        token_form(g, None, Some("other")).into_device_code(),
        Err(DeviceFormError::UnknownClient)
    );
    assert_eq!(
        token_form(g, None, c).into_device_code(),
        Err(DeviceFormError::MissingDeviceCode)
    );
    assert_eq!(
        token_form(g, Some(""), c).into_device_code(),
        Err(DeviceFormError::MissingDeviceCode)
    );
    let longest = "a".repeat(MAX_DEVICE_CODE);
    assert_eq!(
        token_form(g, Some(&longest), c).into_device_code(),
        Ok(longest.clone())
    );
    assert_eq!(
        token_form(g, Some(&format!("{longest}a")), c).into_device_code(),
        Err(DeviceFormError::MissingDeviceCode)
    );
}

#[test]
fn each_refusal_has_the_rfc_code_and_status_the_relay_answers() {
    use TokenErrorCode::*;
    let cases = [
        (DeviceFormError::UnknownClient, InvalidClient, 401),
        (DeviceFormError::UnsupportedGrant, UnsupportedGrantType, 400),
        (DeviceFormError::MissingDeviceCode, InvalidRequest, 400),
        (DeviceFormError::DeviceFieldTooLong, InvalidRequest, 400),
        (DeviceFormError::DeviceFieldControl, InvalidRequest, 400),
    ];
    for (error, code, status) in cases {
        assert_eq!((error.code(), error.status().as_u16()), (code, status));
    }
}

#[test]
fn a_token_forms_debug_output_leaves_the_device_code_out() {
    let form = token_form(Some(DEVICE_CODE_GRANT), Some("s3cr3t-code"), None);
    assert!(!format!("{form:?}").contains("s3cr3t-code"));
}

#[test]
fn names_in_any_script_are_kept_as_written() {
    for good in ["Rōnin's ノートPC", "حاسوب العمل", "dev-box (WSL) 🖥"] {
        assert_eq!(
            device_form(Some(good), Some("Linux"))
                .into_device()
                .unwrap()
                .device_name,
            good
        );
    }
}
