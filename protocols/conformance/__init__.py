"""The conformance kit for adapter authors, sans-IO: every message an adapter sends, checked
strictly against its channel's spec, and the required message flows it has exercised.

`session.py` keeps what was sent and answered and checks each message against the others
(ids, repeats, originals, amounts); `iso_rules.py` and `jd_rules.py` read one message of a
channel strictly; `flows.py` is the list of required flows per channel (data: a flow is one
entry with its recogniser); `report.py` writes the report (text, JUnit XML, JSON). The
switch side (`switch conform`) is switch/conform_cli.py; docs/channels/conformance.md.
"""
