#!/usr/bin/env python3
"""Send one CDEvent to the gateway with the CloudEvents Python SDK (a client we did not write).

Usage: send_event.py --url URL --mode binary|structured --event FILE
                     [--token TOKEN | --hmac-client NAME --hmac-secret SECRET]
                     [--cacert PEM [--cert PEM --key PEM]]   (HTTPS, optionally a client certificate)
FILE holds a CDEvent (JSON); the CloudEvent attributes come from its context, as the
CDEvents CloudEvents binding says. Prints {"status": <int>, "body": <text>} on one line.
"""
import argparse
import hashlib
import hmac
import json
import ssl
import sys
import time
import urllib.error
import urllib.request

from cloudevents.http import CloudEvent, to_binary, to_structured


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--mode", choices=["binary", "structured"], required=True)
    p.add_argument("--event", required=True)
    p.add_argument("--token")
    p.add_argument("--hmac-client")
    p.add_argument("--hmac-secret")
    p.add_argument("--cacert")
    p.add_argument("--cert")
    p.add_argument("--key")
    a = p.parse_args()

    with open(a.event, encoding="utf-8") as f:
        cdevent = json.load(f)
    ctx = cdevent["context"]
    attributes = {
        "type": ctx["type"],
        "source": ctx["source"],
        "id": ctx["id"],
        "datacontenttype": "application/json",
    }
    if "timestamp" in ctx:
        attributes["time"] = ctx["timestamp"]
    event = CloudEvent(attributes, cdevent)
    headers, body = to_binary(event) if a.mode == "binary" else to_structured(event)
    if isinstance(body, str):
        body = body.encode("utf-8")
    headers = dict(headers)
    if a.token:
        headers["Authorization"] = f"Bearer {a.token}"
    if a.hmac_client:
        ts = str(int(time.time()))
        mac = hmac.new(a.hmac_secret.encode(), ts.encode() + b"." + body, hashlib.sha256)
        headers["X-CDEvents-Client"] = a.hmac_client
        headers["X-CDEvents-Timestamp"] = ts
        headers["X-CDEvents-Signature"] = "sha256=" + mac.hexdigest()
    req = urllib.request.Request(a.url, data=body, headers=headers, method="POST")
    context = None
    if a.cacert:
        context = ssl.create_default_context(cafile=a.cacert)
        if a.cert:
            context.load_cert_chain(a.cert, a.key)
    try:
        with urllib.request.urlopen(req, timeout=10, context=context) as resp:
            status, text = resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read().decode()
    print(json.dumps({"status": status, "body": text}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
