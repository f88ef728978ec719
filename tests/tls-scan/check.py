"""Checks a testssl.sh JSON report against the TLS promises and writes a summary."""
import json
import sys

# Finding id -> what it must say (a substring), as SECURITY.md promises.
REQUIRED = {
    "SSLv2": "not offered",
    "SSLv3": "not offered",
    "TLS1": "not offered",
    "TLS1_1": "not offered",
    "TLS1_2": "offered",
    "TLS1_3": "offered",
    "cipherlist_NULL": "not offered",
    "cipherlist_aNULL": "not offered",
    "cipherlist_EXPORT": "not offered",
    "cipherlist_LOW": "not offered",
    "cipherlist_3DES_IDEA": "not offered",
    "cipherlist_AVERAGE": "not offered",  # the obsolete CBC suites
    "cipherlist_STRONG": "offered",
    "PFS": "offered",
    "secure_renego": "supported",
    "CRIME_TLS": "not vulnerable",
    "heartbleed": "not vulnerable",
    "POODLE_SSL": "not vulnerable",
    "SWEET32": "not vulnerable",
    "LUCKY13": "not vulnerable",
    "BEAST": "not vulnerable",
    "ROBOT": "not vulnerable",
}
# Checks that client-certificate authentication keeps the scanner from running (they need an
# HTTP exchange or a renegotiation the scanner cannot start without a certificate).
NOT_TESTABLE = {"secure_client_renego", "BREACH"}


def main(report_path: str, out_path: str) -> int:
    findings = json.load(open(report_path))
    by_id = {}
    for f in findings:
        by_id.setdefault(f["id"], f)
    broken = []
    for finding_id, expected in REQUIRED.items():
        got = by_id.get(finding_id, {}).get("finding", "(missing)")
        # "offered" must not match "not offered".
        ok = expected in got and not (expected == "offered" and "not offered" in got)
        if not ok:
            broken.append(f"{finding_id}: expected {expected!r}, got {got!r}")
    for f in findings:
        if f["severity"] in ("HIGH", "CRITICAL") and f["id"] not in NOT_TESTABLE:
            broken.append(f"{f['id']}: {f['severity']}: {f['finding']}")
    lines = [
        "# TLS scan of the mutual-TLS listener",
        "",
        "Made by `bash tests/tls-scan/run.sh` (testssl.sh from Debian, against a fresh server on",
        "127.0.0.1; `.ci/run` runs it). Every row below is the scanner's own finding.",
        "",
        "| check | severity | finding |",
        "|---|---|---|",
    ]
    for f in findings:
        if f["id"] in ("scanTime",) or f["id"].startswith("cipher_order_"):
            continue
        finding = f["finding"].replace("|", "/")
        lines.append(f"| {f['id']} | {f['severity']} | {finding} |")
    lines += [
        "",
        "Not testable from outside: " + ", ".join(sorted(NOT_TESTABLE))
        + " (the listener asks every client for a certificate before any HTTP or renegotiation;"
        + " rustls does not implement renegotiation at all).",
        "",
        "Result: " + ("all promises hold." if not broken else "BROKEN: " + "; ".join(broken)),
        "",
    ]
    open(out_path, "w").write("\n".join(lines))
    for line in broken:
        print("tls-scan: " + line, file=sys.stderr)
    print(f"tls-scan: {len(REQUIRED)} promises checked, {len(broken)} broken; summary in {out_path}")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
