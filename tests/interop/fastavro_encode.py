#!/usr/bin/env python3
"""Encode records with fastavro, to cross-check our Rust encoder's golden bytes.

stdin: one JSON document
    {"schema": <the Avro schema: JSON text in a string, or the JSON object itself>,
     "records": [<record as a JSON object>, ...]}
stdout: for each record, one line with the hex (lowercase) of fastavro.schemaless_writer's Avro
binary body: no Confluent framing (no magic byte, no schema id).

Logical types: values are passed to fastavro exactly as the JSON gives them.
  * uuid (on string): give the text form, e.g. "123e4567-e89b-12d3-a456-426614174000"; fastavro
    writes the string as is (it converts only uuid.UUID objects, and does not check the text).
  * timestamp-micros (on long): give an int (microseconds since the epoch); fastavro converts only
    datetime objects and writes an int unchanged, as the zig-zag varint of that long.
Unions: give the plain value ("x" or null for ["null","string"]); fastavro picks the branch.

Each record is first checked with fastavro.validation.validate (raise_errors=True); a record that
does not fit the schema is an error. Exit 0 on success, 1 on any error (message on stderr), with
nothing on stdout then.

Needs: fastavro (e.g. the venv of confluent-kafka[avro]==2.16.1, which has fastavro 1.13.1).
"""

import io
import json
import sys

import fastavro
from fastavro.validation import validate


def main():
    try:
        doc = json.load(sys.stdin)
        schema = doc["schema"]
        if isinstance(schema, str):
            schema = json.loads(schema)
        records = doc["records"]
        if not isinstance(records, list):
            raise ValueError('"records" must be a JSON array')
        parsed = fastavro.parse_schema(schema)
        lines = []
        for i, rec in enumerate(records):
            try:
                validate(rec, parsed, raise_errors=True)
                buf = io.BytesIO()
                fastavro.schemaless_writer(buf, parsed, rec)
            except Exception as e:  # noqa: BLE001 - report which record failed
                raise ValueError(f"record {i}: {type(e).__name__}: {e}") from e
            lines.append(buf.getvalue().hex())
    except Exception as e:  # noqa: BLE001
        print(f"fastavro_encode: {e}", file=sys.stderr)
        return 1
    for line in lines:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
