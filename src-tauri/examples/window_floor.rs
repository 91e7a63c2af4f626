//! The floor under the window's open → interactive figure: how long a bare Tauri window (this
//! machine's WebKitGTK, no plugin, no command, no state) takes from `main` to a one-line page
//! loaded. `scripts/bench-app.sh` runs it beside `katachi-app --window` in the same run, so the
//! window's own share of its figure can be told from WebKit's.
//!
//! Prints `window floor: page loaded after N ms at unix ms T` and exits.

use std::process::ExitCode;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tauri::webview::PageLoadEvent;
use tauri::{Manager, WebviewUrl, WebviewWindowBuilder};

/// The page, served from a scheme of its own as the app's page is from `tauri://`.
const PAGE: &str = "<!doctype html><meta charset=utf-8><title>floor</title><p>floor";

fn main() -> ExitCode {
    let started = Instant::now();
    let app = match tauri::Builder::default()
        .register_uri_scheme_protocol("floor", |_, _| {
            tauri::http::Response::builder()
                .header("content-type", "text/html")
                .body(PAGE.as_bytes().to_vec())
                .unwrap_or_default()
        })
        .build(tauri::generate_context!("../tauri.conf.json"))
    {
        Ok(app) => app,
        Err(err) => {
            eprintln!("window floor: cannot build the app: {err}");
            return ExitCode::FAILURE;
        }
    };
    let app_built = started.elapsed().as_millis();
    let url = match "floor://localhost/".parse() {
        Ok(url) => url,
        Err(err) => {
            eprintln!("window floor: bad page URL: {err}");
            return ExitCode::FAILURE;
        }
    };
    let built = WebviewWindowBuilder::new(&app, "floor", WebviewUrl::CustomProtocol(url))
        .title("floor")
        .inner_size(760.0, 620.0)
        .on_page_load(move |window, payload| {
            if payload.event() == PageLoadEvent::Finished {
                let wall_ms = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |since| since.as_millis());
                eprintln!(
                    "window floor: page loaded after {} ms at unix ms {wall_ms}",
                    started.elapsed().as_millis()
                );
                window.app_handle().exit(0);
            }
        })
        .build();
    if let Err(err) = built {
        eprintln!("window floor: cannot open the window: {err}");
        return ExitCode::FAILURE;
    }
    eprintln!(
        "window floor: app built {app_built} ms, window created {} ms",
        started.elapsed().as_millis()
    );
    app.run_return(|_, _| {});
    ExitCode::SUCCESS
}
