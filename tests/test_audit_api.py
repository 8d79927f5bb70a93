"""Reading the audit log: `GET /api/v1/audit` for operators and each organisation's
admins, each tenant's events apart, filters, paging with the cursor, bad filters
refused, the JSON-lines export; and `hark audit list` on the local database. On SQLite
and PostgreSQL."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hark.audit.actor import COMMAND_LINE
from hark.cli import app as cli
from hark.keys.service import create_key, revoke_key
from tests.support.audit import (
    AUDIT,
    OPERATOR_TENANT,
    audit_page,
    audit_service_fixture,
    every_page,
    key_id,
)
from tests.support.service import Service, assert_error, bearer, sine_wav

svc = audit_service_fixture("audit-api")
runner = CliRunner()


@pytest.fixture(scope="module")
def keys(svc: Service) -> dict[str, str]:
    """Admin keys of the operator tenant and of an ordinary one, and an ordinary key."""
    return {"ops": svc.create_key(OPERATOR_TENANT, scopes="admin jobs:read"),
            "alpha-admin": svc.create_key("alpha", scopes="admin"),
            "alpha": svc.create_key("alpha")}


# --- reading: access -----------------------------------------------------------------------

def test_operators_see_their_own_tenant_and_others_on_request(
    svc: Service, keys: dict[str, str],
) -> None:
    ops = keys["ops"]
    own = every_page(svc, ops, limit=500)
    assert own and {item["tenant_id"] for item in own} == {"ops"}
    assert key_id(svc, ops) in {item["target_id"] for item in own}  # its own creation

    svc.submit(sine_wav(0.5), "seen.wav", headers=bearer(keys["alpha"]))
    alpha = every_page(svc, ops, tenant="alpha", limit=500)
    assert {item["tenant_id"] for item in alpha} == {"alpha"}
    assert "job.created" in {item["action"] for item in alpha}


def test_an_organisations_admin_reads_its_own_log_only(svc: Service,
                                                        keys: dict[str, str]) -> None:
    svc.submit(sine_wav(0.5), "mine.wav", headers=bearer(keys["alpha"]))
    admin = bearer(keys["alpha-admin"])
    own = svc.client.get(AUDIT, params={"limit": 200}, headers=admin)
    assert own.status_code == 200, own.text
    items = own.json()["items"]
    assert "job.created" in {i["action"] for i in items}
    assert {i["tenant_id"] for i in items} == {"alpha"}
    assert svc.client.get(AUDIT, params={"tenant": "alpha"}, headers=admin).status_code == 200
    assert_error(svc.client.get(AUDIT, params={"tenant": OPERATOR_TENANT}, headers=admin),
                 403, "OPERATOR_ONLY")


def test_callers_who_are_neither_admins_nor_operators_are_refused(
        svc: Service, keys: dict[str, str]) -> None:
    for params in ({}, {"tenant": "alpha"}, {"format": "jsonl"}):
        # A key without the admin scope; the anonymous local user of a server whose
        # operators are another tenant.
        assert_error(svc.client.get(AUDIT, params=params, headers=bearer(keys["alpha"])),
                     403, "SCOPE_NOT_ALLOWED")
        assert_error(svc.client.get(AUDIT, params=params), 403, "OPERATOR_ONLY")


# --- reading: filters, paging, export ---------------------------------------------------------

@pytest.fixture(scope="module")
def ledger(svc: Service, keys: dict[str, str]) -> list[str]:
    """Tenant `ledger`: five keys made and two of them revoked (seven events). Returns
    the keys' ids, in the order they were made."""
    ids = []
    with svc.state.db.session(write=True) as session:
        for n in range(5):
            ids.append(create_key(session, name=f"k{n}", tenant_id="ledger",
                                  actor=COMMAND_LINE).key.id)
    for revoked in ids[:2]:
        with svc.state.db.session(write=True) as session:
            revoke_key(session, revoked, actor=COMMAND_LINE)
    return ids


def test_pages_follow_the_cursor_newest_first_without_gaps_or_repeats(
    svc: Service, keys: dict[str, str], ledger: list[str],
) -> None:
    pages = []
    cursor = None
    while True:
        page = audit_page(svc, keys["ops"], tenant="ledger", limit=3,
                          **({"cursor": cursor} if cursor else {}))
        pages.append(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [len(p) for p in pages] == [3, 3, 1]
    items = [item for page in pages for item in page]
    assert len({item["id"] for item in items}) == 7
    order = [(datetime.fromisoformat(item["created_at"]), item["id"]) for item in items]
    assert order == sorted(order, reverse=True)
    assert {item["target_id"] for item in items} == set(ledger)


def test_filters_narrow_the_list(svc: Service, keys: dict[str, str], ledger: list[str]) -> None:
    ops = keys["ops"]
    revoked = every_page(svc, ops, tenant="ledger", action="key.revoked")
    assert sorted(item["target_id"] for item in revoked) == sorted(ledger[:2])
    about = every_page(svc, ops, tenant="ledger", target_id=ledger[0])
    assert sorted(item["action"] for item in about) == ["key.created", "key.revoked"]
    assert len(every_page(svc, ops, tenant="ledger", actor="cli")) == 7
    assert every_page(svc, ops, tenant="ledger", actor="anonymous") == []
    assert every_page(svc, ops, tenant="ledger", actor=key_id(svc, ops)) == []

    newest_first = every_page(svc, ops, tenant="ledger")
    pivot = newest_first[3]["created_at"]  # ISO 8601 with Z, as the API writes it
    since = every_page(svc, ops, tenant="ledger", since=pivot)
    until = every_page(svc, ops, tenant="ledger", until=pivot)
    assert {i["id"] for i in since} | {i["id"] for i in until} == \
        {i["id"] for i in newest_first}
    assert not {i["id"] for i in since} & {i["id"] for i in until}
    assert newest_first[3]["id"] in {i["id"] for i in since}
    # No offset means UTC.
    naive = every_page(svc, ops, tenant="ledger", since=pivot.removesuffix("Z"))
    assert [i["id"] for i in naive] == [i["id"] for i in since]


@pytest.mark.parametrize(("params", "status", "code", "field"), [
    ({"since": "yesterday"}, 422, "INVALID_OPTION", "since"),
    ({"until": "2026-13-01"}, 422, "INVALID_OPTION", "until"),
    ({"since": "2026-12-02", "until": "2026-12-01"}, 422, "INVALID_OPTION", "until"),
    ({"action": "job.exploded"}, 422, "INVALID_OPTION", "action"),
    ({"cursor": "not-a-cursor"}, 422, "INVALID_OPTION", "cursor"),
    ({"cursor": "not-a-cursor", "format": "jsonl"}, 422, "INVALID_OPTION", "cursor"),
    ({"limit": "501"}, 422, "INVALID_REQUEST", "limit"),
    ({"limit": "0"}, 422, "INVALID_REQUEST", "limit"),
    ({"format": "xml"}, 422, "INVALID_REQUEST", "format"),
])
def test_bad_filters_are_refused_with_an_error_code(
    svc: Service, keys: dict[str, str], params: dict[str, str], status: int, code: str,
    field: str,
) -> None:
    assert_error(svc.client.get(AUDIT, params=params, headers=bearer(keys["ops"])),
                 status, code, field)


def test_json_lines_export_streams_every_matching_event(
    svc: Service, keys: dict[str, str], ledger: list[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    ops = keys["ops"]
    paged = [item["id"] for item in every_page(svc, ops, tenant="ledger")]
    # Batches of two, so the export has to carry on from batch to batch.
    monkeypatch.setattr("hark.audit.service.MAX_PAGE", 2)
    response = svc.client.get(AUDIT, params={"tenant": "ledger", "format": "jsonl"},
                              headers=bearer(ops))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/x-ndjson")
    lines = response.text.splitlines()
    assert [json.loads(line)["id"] for line in lines] == paged
    assert all(json.loads(line)["tenant_id"] == "ledger" for line in lines)

    by_accept = svc.client.get(AUDIT, params={"tenant": "ledger", "limit": 3},
                               headers={**bearer(ops), "Accept": "application/x-ndjson"})
    assert [json.loads(line)["id"] for line in by_accept.text.splitlines()] == paged[:3]


# --- the command line -------------------------------------------------------------------------

def test_cli_records_key_events_and_lists_them(cli_env: Path) -> None:
    made = runner.invoke(cli, ["keys", "create", "--name", "ci", "--tenant", "acme", "--json"])
    assert made.exit_code == 0, made.output
    new_key = json.loads(made.stdout)["id"]
    for _ in range(2):  # the same rate again changes nothing: no second event
        assert runner.invoke(cli, ["keys", "rate", new_key, "10/minute"]).exit_code == 0
    for _ in range(2):  # nor does revoking a revoked key
        assert runner.invoke(cli, ["keys", "revoke", new_key]).exit_code == 0

    listed = runner.invoke(cli, ["audit", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    events = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [e["action"] for e in events] == ["key.revoked", "key.rate_changed", "key.created"]
    assert events[1]["details"] == {"from": None, "to": "10/minute"}
    assert {(e["tenant_id"], e["target_id"], e["actor_kind"], e["actor_key_id"],
             e["request_id"]) for e in events} == {("acme", new_key, "cli", None, None)}

    table = runner.invoke(cli, ["audit", "list", "--action", "key.created", "--tenant", "acme"])
    assert table.exit_code == 0, table.output
    (row,) = table.stdout.splitlines()
    assert row.split("\t")[1:5] == ["acme", "key.created", f"key:{new_key}", "cli"]

    none = runner.invoke(cli, ["audit", "list", "--tenant", "nobody"])
    assert none.exit_code == 0 and none.stdout == ""
    assert "No audit events match" in none.stderr
    later = runner.invoke(cli, ["audit", "list", "--since", "2999-01-01T00:00:00Z"])
    assert later.exit_code == 0 and later.stdout == ""


@pytest.mark.parametrize(("option", "value"), [("--since", "last tuesday"),
                                               ("--until", "2026-02-30"),
                                               ("--action", "key.lost")])
def test_cli_refuses_a_bad_filter_with_a_message(cli_env: Path, option: str,
                                                 value: str) -> None:
    result = runner.invoke(cli, ["audit", "list", option, value])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "error:" in result.stderr and "[INVALID_OPTION]" in result.stderr
    assert option.removeprefix("--") in result.stderr
