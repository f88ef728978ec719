"""Drives the reference tools against an Escape server for the end-to-end tests.

    check.py read URL CA CERT KEY                 every collection and its objects, as JSON
    check.py write URL CA CERT KEY TITLE FILE     posts FILE (a STIX bundle) to the collection TITLE
    check.py validate FILE                        the OASIS validator's verdict on a bundle

URL is the TAXII discovery URL (https://127.0.0.1:PORT/taxii2/). Prints one JSON document.
"""

import json
import sys


def server(url, ca, cert, key):
    from taxii2client.v21 import Server

    return Server(url, cert=(cert, key), verify=ca)


def read(url, ca, cert, key):
    srv = server(url, ca, cert, key)
    out = {"title": srv.title, "api_roots": []}
    for root in srv.api_roots:
        entry = {"url": root.url, "versions": root.versions, "collections": []}
        for collection in root.collections:
            envelope = collection.get_objects()
            manifest = collection.get_manifest()
            entry["collections"].append(
                {
                    "id": collection.id,
                    "title": collection.title,
                    "can_read": collection.can_read,
                    "can_write": collection.can_write,
                    "objects": envelope.get("objects", []),
                    "manifest": manifest.get("objects", []),
                }
            )
        out["api_roots"].append(entry)
    print(json.dumps(out))


def write(url, ca, cert, key, title, path):
    with open(path) as f:
        bundle = json.load(f)
    srv = server(url, ca, cert, key)
    for root in srv.api_roots:
        for collection in root.collections:
            if collection.title == title:
                envelope = {"objects": bundle["objects"]}
                status = collection.add_objects(json.dumps(envelope))
                print(
                    json.dumps(
                        {
                            "status": status.status,
                            "success_count": status.success_count,
                            "failure_count": status.failure_count,
                        }
                    )
                )
                return
    print(json.dumps({"error": "no collection " + title}))
    sys.exit(3)


def validate(path):
    from stix2validator import ValidationOptions, validate_file

    results = validate_file(path, ValidationOptions(version="2.1", strict=False))
    errors = []
    for obj in results.object_results:
        for e in obj.errors:
            errors.append(f"{obj.object_id}: {e}")
    print(json.dumps({"valid": results.is_valid, "errors": errors}))


def main():
    mode = sys.argv[1]
    if mode == "read":
        read(*sys.argv[2:6])
    elif mode == "write":
        write(*sys.argv[2:8])
    elif mode == "validate":
        validate(sys.argv[2])
    else:
        sys.exit("unknown mode " + mode)


if __name__ == "__main__":
    main()
