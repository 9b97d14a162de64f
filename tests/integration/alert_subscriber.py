#!/usr/bin/env python3
"""An alert subscriber written with another ZeroMQ binding (pyzmq, Debian's
python3-zmq), as an operator would write one: it proves the monitor's
alerts PUB socket speaks plain ZeroMQ and JSON to any language.

usage: alert_subscriber.py ENDPOINT RULE STATE TIMEOUT_S

Connects a SUB socket to ENDPOINT subscribed to "alert.", prints "READY"
once the connection is up, then waits for the first alert of RULE in
STATE, checks it against API.md ("Alert subscribers": two frames, topic
alert.<severity>.<rule>, JSON body with rule, severity, state, since,
summary, labels) and prints it as one line "ALERT <json>". Exit codes:
0 received and valid, 1 malformed alert, 2 timeout, 3 no pyzmq.
"""
import json
import sys
import time

try:
    import zmq
    from zmq.utils.monitor import recv_monitor_message
except ImportError:
    print("NO_PYZMQ: install python3-zmq", flush=True)
    sys.exit(3)


def fail(why):
    print("INVALID " + why, flush=True)
    sys.exit(1)


def check(topic, body):
    try:
        alert = json.loads(body)
    except ValueError:
        fail("body is not JSON: %r" % body)
    for key in ("rule", "severity", "state", "since", "summary", "labels"):
        if key not in alert:
            fail("missing %s" % key)
    if topic != "alert.%s.%s" % (alert["severity"], alert["rule"]):
        fail("topic %s does not match the body" % topic)
    if alert["state"] not in ("firing", "resolved"):
        fail("bad state %r" % alert["state"])
    if not isinstance(alert["labels"], dict):
        fail("labels is not an object")
    if "T" not in alert["since"]:
        fail("since is not RFC 3339: %r" % alert["since"])
    return alert


def main():
    if len(sys.argv) != 5:
        print(__doc__)
        return 64
    endpoint, rule, state, timeout_s = sys.argv[1:]
    deadline = time.monotonic() + float(timeout_s)
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    monitor = sub.get_monitor_socket()
    sub.setsockopt(zmq.SUBSCRIBE, b"alert.")
    sub.connect(endpoint)
    # READY only once the handshake is done: the subscription follows it
    while time.monotonic() < deadline:
        if monitor.poll(100):
            event = recv_monitor_message(monitor)
            if event["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                break
    else:
        print("TIMEOUT connecting", flush=True)
        return 2
    print("READY", flush=True)
    while time.monotonic() < deadline:
        if not sub.poll(100):
            continue
        frames = sub.recv_multipart()
        if len(frames) != 2:
            fail("%d frames" % len(frames))
        topic = frames[0].decode("utf-8")
        alert = check(topic, frames[1].decode("utf-8"))
        if alert["rule"] == rule and alert["state"] == state:
            print("ALERT " + json.dumps(alert), flush=True)
            return 0
    print("TIMEOUT waiting for %s %s" % (rule, state), flush=True)
    return 2


if __name__ == "__main__":
    sys.exit(main())
