#!/usr/bin/env python3
"""The user's side of connecting a machine, without a browser, for `make bench-app` only: signs up on
a local relay, opens the e-mail verification link the relay logged (local mode: no SMTP), and
approves the device code `katachi start` printed by typing it, through the relay's own HTML forms
(CSRF field + cookie, Origin header), as a browser would.

Usage: bench-approve.py RELAY_URL CA_PEM RELAY_LOG EMAIL PASSWORD USER_CODE
Exits non-zero with the page's text when a step is refused. The e2e tests do the same in Chromium
(tests/support/approval.rs); this stays out of `make test`."""
import html.parser
import http.cookiejar
import re
import ssl
import sys
import time
import urllib.parse
import urllib.request


class Forms(html.parser.HTMLParser):
    """Every <form> of a page: its action and its inputs' default values."""

    def __init__(self):
        super().__init__()
        self.forms = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self.forms.append({"action": a.get("action", ""), "fields": {}})
        elif tag == "input" and self.forms and a.get("name"):
            self.forms[-1]["fields"][a["name"]] = a.get("value") or ""


def main():
    relay, ca, relay_log, email, password, code = sys.argv[1:7]
    ctx = ssl.create_default_context(cafile=ca)
    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()),
        urllib.request.HTTPSHandler(context=ctx),
    )

    def get(url):
        with opener.open(url, timeout=30) as r:
            return r.geturl(), r.read().decode()

    def submit(page_url, action_prefix, values):
        _, body = get(page_url)
        parser = Forms()
        parser.feed(body)
        form = next((f for f in parser.forms if f["action"].startswith(action_prefix)), None)
        if form is None:
            sys.exit(f"bench-approve: no form posting to {action_prefix} on {page_url}")
        fields = dict(form["fields"], **values)
        req = urllib.request.Request(
            urllib.parse.urljoin(page_url, form["action"]),
            data=urllib.parse.urlencode(fields).encode(),
            headers={"Origin": relay, "Content-Type": "application/x-www-form-urlencoded"},
        )
        try:
            with opener.open(req, timeout=60) as r:
                return r.read().decode()
        except urllib.error.HTTPError as e:
            text = re.sub(r"<[^>]+>", " ", e.read().decode())
            sys.exit(f"bench-approve: {action_prefix} refused ({e.code}): {' '.join(text.split())[:300]}")

    submit(f"{relay}/signup", "/signup", {"email": email, "password": password})
    link = None
    for _ in range(100):
        found = re.findall(rf"verification link for {re.escape(email)} is (\S+)", open(relay_log).read())
        if found:
            link = found[-1]
            break
        time.sleep(0.2)
    if link is None:
        sys.exit("bench-approve: the relay logged no verification link")
    submit(link, "/verify-email/", {})
    body = submit(f"{relay}/device?user_code={code}", "/device",
                  {"user_code": code, "confirm_code": code, "action": "approve"})
    if "Device connected" not in body:
        text = " ".join(re.sub(r"<[^>]+>", " ", body).split())
        sys.exit(f"bench-approve: approval not confirmed: {text[:300]}")
    print("bench-approve: device approved")


if __name__ == "__main__":
    main()
