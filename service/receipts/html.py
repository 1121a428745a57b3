"""A consent receipt as a printable page (``?format=html``): every value escaped, the signed
JSON beside it so the page is the receipt, not a summary of it."""

from __future__ import annotations

import html
import json
from typing import Any


def _e(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, dict | list):
        return html.escape(json.dumps(value, ensure_ascii=False, sort_keys=True))
    return html.escape(str(value))


def _rows(pairs: list[tuple[str, Any]]) -> str:
    return "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in pairs)


def render(receipt: dict[str, Any], canonical: bytes) -> str:
    call, tenant = receipt["call"], receipt["tenant"]
    notice = receipt.get("notice") or {}
    seal, proof, coverage = receipt.get("seal"), receipt.get("proof"), receipt["coverage"]
    events = "".join(
        "<tr>"
        f"<td>{_e(e.get('seq', ''))}</td><td>{_e(e.get('at'))}</td><td>{_e(e.get('type'))}</td>"
        f"<td class=mono>{_e(e.get('details'))}</td><td class=mono>{_e(e.get('hash', ''))}</td>"
        "</tr>"
        for e in receipt["events"]
    )
    seal_rows = (
        _rows(
            [
                ("seal", seal["id"]),
                ("sealed at", seal["at"]),
                ("Merkle root", seal["root"]),
                ("tree size", seal["tree_size"]),
                ("seal hash", seal["hash"]),
                ("previous seal", seal["prev_hash"]),
                ("leaf index", proof["leaf_index"]),
                ("call head", proof["head"]),
                ("inclusion path", " ".join(proof["path"]) or "(a tree of one)"),
            ]
        )
        if seal and proof
        else _rows([("seal", "not sealed yet"), ("next seal due by", coverage["next_seal_due_by"])])
    )
    notice_rows = _rows(list(notice.items())) or _rows([("notice", "none was played")])
    signature_rows = _rows(
        [
            ("key id", receipt["key"]["id"]),
            ("public key (Ed25519)", receipt["key"]["public_key"]),
            ("signature", receipt["signature"]["value"]),
        ]
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Consent receipt — call {_e(call["id"])}</title>
<style>
body {{ font: 11pt/1.4 system-ui, sans-serif; margin: 2em; color: #000; }}
table {{ border-collapse: collapse; margin: 0 0 1.5em; width: 100%; }}
th, td {{ border: 1px solid #999; padding: 3px 6px; text-align: left; vertical-align: top; }}
th {{ width: 14em; background: #eee; }}
.mono, pre {{ font-family: ui-monospace, monospace; font-size: 8.5pt; word-break: break-all; }}
pre {{ white-space: pre-wrap; border: 1px solid #999; padding: 6px; }}
@media print {{ body {{ margin: 0; }} }}
</style></head><body>
<h1>Consent receipt</h1>
<p>Issued {_e(receipt.get("issued_at"))} by {_e(tenant.get("name"))} ({_e(tenant["id"])}).
Check it offline: save the signed JSON below exactly as it is (or fetch the receipt without
<code>format=html</code>) and run <code>callvault receipt verify FILE --public-key KEY</code>
with the key below.</p>
<h2>Call</h2><table>{_rows([(k, call[k]) for k in call])}</table>
<h2>Notice played</h2><table>{notice_rows}</table>
<h2>Ledger events</h2>
<table><tr><th>#</th><th>at</th><th>type</th><th>details</th><th>hash</th></tr>{events}</table>
<h2>Seal and inclusion proof</h2><table>{seal_rows}{_rows([("coverage", coverage)])}</table>
<h2>Signature</h2><table>{signature_rows}</table>
<h2>Signed JSON (RFC 8785)</h2><pre>{html.escape(canonical.decode("utf-8"))}</pre>
</body></html>
"""
