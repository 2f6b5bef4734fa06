"""``ratewire ingest``: switch CDR files through mediation and rating, and a spool folder.

Every fixture is a few hand-written CDR lines for tenant ``ratewire.demo`` on
the sample plan, on Monday 2 November 2026 at 10:00 in Berlin (peak):

* 45 s to a German fixed number: 0.03 connect + one 60 s block at 0.09 = 0.12
* 90 s to a German mobile: 0.03 + 0.19 (first minute) + 30 s at 0.19/min = 0.315
* 30 s to a German mobile: 0.03 + 0.19 = 0.22
* 125 s to a German fixed number: 0.03 + 0.09 + 65 s at 0.09/min = 0.2175
* a call to ``999`` (a zone no plan binds) is rejected UNAUTHORIZED_DESTINATION
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from engine.cli import EXIT_BAD_INPUT, EXIT_OK, main
from engine.ingest import LEDGER_NAME, complete_files
from engine.rejects import read_rejects

PLAN = str(Path(__file__).parents[2] / "tariffs" / "samples" / "mobile.toml")
TENANT = "ratewire.demo"
PEAK_UTC = 1793610000  # 2026-11-02 09:00:00 UTC, 10:00 in Berlin

_AST = (
    '"acme","2001","{dst}","default","","SIP/a","SIP/b","Dial","","2026-11-02 10:00:00",'
    '"{answer}","2026-11-02 10:05:00","{dur}","{bill}","{disp}","BILLING","{uid}",""'
)
ASTERISK = "\n".join([
    _AST.format(dst="4930123456", answer="2026-11-02 10:00:05", dur=50, bill=45,
                disp="ANSWERED", uid="u1"),
    _AST.format(dst="4915112345", answer="2026-11-02 10:01:05", dur=95, bill=90,
                disp="ANSWERED", uid="u2"),
    _AST.format(dst="4930123456", answer="", dur=20, bill=0, disp="NO ANSWER", uid="u3"),
    "",
    '"acme","2001","broken"',
    _AST.format(dst="999", answer="2026-11-02 10:04:05", dur=35, bill=30,
                disp="ANSWERED", uid="u4"),
]) + "\n"  # fmt: skip
_FS = (
    '"A","2001","{dst}","default","2026-11-02 09:59:55","{answer}","2026-11-02 10:02:05",'
    '"130","{bill}","NORMAL_CLEARING","{uuid}","{bleg}","{acct}","PCMA","PCMA"'
)
FREESWITCH_CSV = "\n".join([
    _FS.format(dst="4930123456", answer="2026-11-02 10:00:00", bill=125, uuid="A1", bleg="B1",
               acct="acme"),
    _FS.format(dst="4930123456", answer="2026-11-02 10:00:00", bill=125, uuid="B1", bleg="",
               acct=""),
    _FS.format(dst="4930123456", answer="", bill=0, uuid="A2", bleg="", acct="acme"),
]) + "\n"  # fmt: skip
FREESWITCH_JSON = json.dumps({
    "variables": {"uuid": "j1", "billsec": "30", "answer_epoch": str(PEAK_UTC),
                  "accountcode": "acme", "destination_number": "4915112345"},
    "callflow": [{"caller_profile": {"caller_id_number": "2001"}}],
})  # fmt: skip
ACC_1 = "\n".join([
    f"INVITE|f1|t1|c1|200|OK|{PEAK_UTC}|*prepaid|acme|4930123456",
    f"BYE|t1|f1|c1|200|OK|{PEAK_UTC + 45}",
    f"INVITE|f2|t2|c2|200|OK|{PEAK_UTC + 60}|*prepaid|acme|4915112345",  # its BYE: next file
    f"REGISTER|f9|t9|r1|200|OK|{PEAK_UTC}",
    f"INVITE|f4|t4|c4|486|Busy Here|{PEAK_UTC}|*prepaid|acme|4930123456",
]) + "\n"  # fmt: skip
ACC_2 = "\n".join([
    f"BYE|f2|t2|c2|200|OK|{PEAK_UTC + 150}",
    f"INVITE|f3|t3|c3|200|OK|{PEAK_UTC + 200}|*prepaid|acme|4930123456",  # never ends
]) + "\n"  # fmt: skip
DIALOG = "\n".join([
    "callid=d1;src_user=acme;dst_user=4930123456;start_time=2026-11-02 10:00:00;"
    "end_time=2026-11-02 10:00:44.2;duration=44.2",
    "callid=d2;src_user=acme;dst_user=4930123456;duration=ten",
    "",
]) + "\n"  # fmt: skip


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    code = main([*argv, "--json"])
    out = capsys.readouterr().out.strip().splitlines()
    return code, json.loads(out[-1]) if out else None


def ingest(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, fmt: str, *sources: str | Path
) -> tuple[int, Any]:
    return cli(capsys, "ingest", "--format", fmt, *map(str, sources), "--tenant", TENANT,
               "--timezone", "Europe/Berlin", "--tariffs", PLAN,
               "--out", str(tmp_path / "rated.jsonl"),
               "--rejects", str(tmp_path / "rejects.jsonl"))  # fmt: skip


def write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def rated(tmp_path: Path) -> list[tuple[str, str]]:
    lines = (tmp_path / "rated.jsonl").read_text().splitlines()
    return [(r["cdr_id"], r["cost"]) for r in map(json.loads, lines)]


def counts(summary: dict[str, Any]) -> dict[str, Any]:
    keys = ("status", "lines", "carried_in", "parsed", "skipped_by_rule", "rejected_by_reason",
            "unpaired", "rated", "rating_rejected_by_reason", "charged")  # fmt: skip
    return {k: summary[k] for k in keys}


def test_asterisk_counts_add_up(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    master = write(tmp_path / "Master.csv", ASTERISK)
    code, answer = ingest(capsys, tmp_path, "asterisk", master)
    assert code == EXIT_OK
    assert counts(answer["files"][0]) == {
        "status": "done", "lines": 6, "carried_in": 0, "parsed": 3,
        "skipped_by_rule": {"blank": 1, "no_answer": 1},
        "rejected_by_reason": {"VALIDATION_ERROR": 1}, "unpaired": 0, "rated": 2,
        "rating_rejected_by_reason": {"UNAUTHORIZED_DESTINATION": 1},
        "charged": {"EUR": "0.435"},
    }  # fmt: skip
    assert answer["balanced"] is True
    assert rated(tmp_path) == [("u1", "0.12"), ("u2", "0.315")]
    sources = [(r.source, r.reason) for r in read_rejects(tmp_path / "rejects.jsonl")]
    assert sources == [(f"{master}:5", "VALIDATION_ERROR"),
                       (f"{master}#2", "UNAUTHORIZED_DESTINATION")]  # fmt: skip


def test_freeswitch_csv_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv_file = write(tmp_path / "Master.csv", FREESWITCH_CSV)
    code, answer = ingest(capsys, tmp_path, "freeswitch-csv", csv_file)
    assert code == EXIT_OK
    assert counts(answer["total"]) | {"status": ""} == {
        "status": "", "lines": 3, "carried_in": 0, "parsed": 1,
        "skipped_by_rule": {"b_leg": 1, "unanswered": 1}, "rejected_by_reason": {},
        "unpaired": 0, "rated": 1, "rating_rejected_by_reason": {}, "charged": {"EUR": "0.2175"},
    }  # fmt: skip
    assert rated(tmp_path) == [("A1", "0.2175")]

    good = write(tmp_path / "j1.json", FREESWITCH_JSON)
    bad = write(tmp_path / "j2.json", '{"variables": {"uuid": ')
    also_good = write(tmp_path / "j3.json", FREESWITCH_JSON.replace('"j1"', '"j3"'))
    code, answer = ingest(capsys, tmp_path, "freeswitch-json", good, bad, also_good)
    assert code == EXIT_OK
    assert [(f["rated"], f["rejected_by_reason"]) for f in answer["files"]] == [
        (1, {}), (0, {"DECODE_ERROR": 1}), (1, {}),
    ]  # fmt: skip
    assert answer["total"]["lines"] == 3
    assert answer["total"]["charged"] == {"EUR": "0.44"}
    assert rated(tmp_path) == [("j1", "0.22"), ("j3", "0.22")]


def test_kamailio_acc_carries_halves(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first, second = write(tmp_path / "acc1.log", ACC_1), write(tmp_path / "acc2.log", ACC_2)
    code, answer = ingest(capsys, tmp_path, "kamailio-acc", first, second)
    assert code == EXIT_OK
    one, two = answer["files"]
    assert counts(one) == {
        "status": "done", "lines": 5, "carried_in": 0, "parsed": 1,
        "skipped_by_rule": {"missed": 1, "other_method": 1}, "rejected_by_reason": {},
        "unpaired": 1, "rated": 1, "rating_rejected_by_reason": {}, "charged": {"EUR": "0.12"},
    }  # fmt: skip
    assert (two["lines"], two["carried_in"], two["parsed_lines"], two["unpaired"]) == (2, 1, 2, 1)
    assert two["charged"] == {"EUR": "0.315"}
    assert answer["balanced"] is True
    assert answer["unpaired_at_end"] == [
        {"source": f"{second}:2", "method": "INVITE", "callid": "c3"}
    ]
    assert rated(tmp_path) == [("c1", "0.12"), ("c2", "0.315")]
    rejects = list(read_rejects(tmp_path / "rejects.jsonl"))
    assert [(r.source, r.reason) for r in rejects] == [(f"{second}:2", "UNPAIRED")]


def test_kamailio_dialog(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = write(tmp_path / "dialog.log", DIALOG)
    code, answer = ingest(capsys, tmp_path, "kamailio-dialog", log)
    assert code == EXIT_OK
    assert counts(answer["files"][0]) == {
        "status": "done", "lines": 3, "carried_in": 0, "parsed": 1,
        "skipped_by_rule": {"blank": 1}, "rejected_by_reason": {"VALIDATION_ERROR": 1},
        "unpaired": 0, "rated": 1, "rating_rejected_by_reason": {}, "charged": {"EUR": "0.12"},
    }  # fmt: skip
    assert rated(tmp_path) == [("d1", "0.12")]


def test_bad_files_never_stop_the_others(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = write(tmp_path / "a.csv", ASTERISK)
    empty = write(tmp_path / "b.csv", "")
    missing = tmp_path / "c.csv"
    garbage = write(tmp_path / "d.csv", b"\xff\xfe\x00garbage\n")
    again = write(tmp_path / "e.csv", ASTERISK.replace('"u', '"v'))
    code, answer = ingest(capsys, tmp_path, "asterisk", good, empty, missing, garbage, again)
    assert code == EXIT_OK
    assert [(f["status"], f["lines"], f["rated"]) for f in answer["files"]] == [
        ("done", 6, 2), ("done", 1, 0), ("failed", 1, 0), ("done", 1, 0), ("done", 6, 2),
    ]  # fmt: skip
    total = answer["total"]
    assert total["lines"] == total["parsed"] + total["skipped"] + total["rejected"] == 15
    assert total["parsed"] == total["rated"] + total["rating_rejected"] == 6
    assert total["rejected_by_reason"] == {"DECODE_ERROR": 2, "FILE_ERROR": 1,
                                           "VALIDATION_ERROR": 2}  # fmt: skip
    assert total["charged"] == {"EUR": "0.87"}
    assert answer["balanced"] is True


def test_a_2_gb_file_is_refused_and_the_others_go_on(
    spool: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(spool / "1.csv", ASTERISK)
    huge = spool / "2.csv"
    with huge.open("wb") as file:
        file.truncate(2 << 30)  # sparse: 2 GiB on paper, no disk used
    write(spool / "3.csv", ASTERISK.replace('"u', '"v'))
    answer = watch(capsys, spool)
    assert [(Path(f["file"]).name, f["status"], f["rated"]) for f in answer["files"]] == [
        ("1.csv", "done", 2), ("2.csv", "failed", 0), ("3.csv", "done", 2),
    ]  # fmt: skip
    failed = answer["files"][1]
    assert failed["rejected_by_reason"] == {"FILE_TOO_LARGE": 1}
    assert "is 2.00 GiB, over the 1.00 GiB limit (--max-file-size)" in failed["error"]
    assert [p.name for p in (spool / "failed").iterdir()] == ["2.csv"]
    assert answer["total"]["charged"] == {"EUR": "0.87"}
    rejects = read_rejects(spool.parent / "rejects.jsonl")
    (reject,) = [r for r in rejects if r.source.endswith(":0")]
    assert reject.source == f"{spool / '2.csv'}:0"
    assert reject.reason == "FILE_TOO_LARGE"


def test_max_file_size_is_configurable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    master = write(tmp_path / "Master.csv", ASTERISK)
    code, answer = cli(capsys, "ingest", "--format", "asterisk", str(master), "--tenant", TENANT,
                       "--timezone", "Europe/Berlin", "--tariffs", PLAN, "--max-file-size", "100",
                       "--out", str(tmp_path / "o"), "--rejects", str(tmp_path / "r"))  # fmt: skip
    assert code == EXIT_OK
    assert answer["files"][0]["status"] == "failed"
    assert answer["files"][0]["rejected_by_reason"] == {"FILE_TOO_LARGE": 1}
    with pytest.raises(SystemExit) as exited:  # argparse: usage line, exit 2
        main(["ingest", "--format", "asterisk", str(master), "--tenant", TENANT,
              "--tariffs", PLAN, "--max-file-size", "lots", "--out", str(tmp_path / "o"),
              "--rejects", str(tmp_path / "r")])  # fmt: skip
    assert exited.value.code == EXIT_BAD_INPUT
    assert "--max-file-size: 'lots' is not a size" in capsys.readouterr().err


def test_bad_timezone_is_the_commands_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    master = write(tmp_path / "Master.csv", ASTERISK)
    code = main(["ingest", "--format", "asterisk", str(master), "--tenant", TENANT,
                 "--timezone", "Mars/Olympus", "--tariffs", PLAN, "--out", str(tmp_path / "o"),
                 "--rejects", str(tmp_path / "r")])  # fmt: skip
    assert code == EXIT_BAD_INPUT
    assert "IANA zone" in capsys.readouterr().err


# --- spool -------------------------------------------------------------------------------


def watch(
    capsys: pytest.CaptureFixture[str], spool: Path, fmt: str = "asterisk", *extra: str
) -> Any:
    code, answer = cli(capsys, "ingest", "--watch", str(spool), "--once", "--format", fmt,
                       "--tenant", TENANT, "--timezone", "Europe/Berlin", "--tariffs", PLAN,
                       "--out", str(spool.parent / "rated.jsonl"),
                       "--rejects", str(spool.parent / "rejects.jsonl"), *extra)  # fmt: skip
    assert code == EXIT_OK
    return answer


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    folder = tmp_path / "spool"
    folder.mkdir()
    return folder


def test_spool_takes_complete_files_only(spool: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(spool / "a.csv", ASTERISK)  # renamed into place
    write(spool / ".b.csv", ASTERISK)  # still being written
    write(spool / "c.csv.part", ASTERISK)
    write(spool / "d.csv.tmp", ASTERISK.replace('"u', '"d'))
    write(spool / "d.csv.tmp.done", "")  # ... but its writer says it is complete
    write(spool / "e.csv.tmp", ASTERISK)
    assert [p.name for p in complete_files(spool)] == ["a.csv", "d.csv.tmp"]
    answer = watch(capsys, spool)
    assert [(Path(f["file"]).name, f["status"], f["rated"]) for f in answer["files"]] == [
        ("a.csv", "done", 2), ("d.csv.tmp", "done", 2),
    ]  # fmt: skip
    assert sorted(p.name for p in (spool / "done").iterdir()) == ["a.csv", "d.csv.tmp"]
    left = sorted(p.name for p in spool.iterdir() if p.is_file())
    assert left == [".b.csv", LEDGER_NAME, "c.csv.part", "e.csv.tmp"]
    assert rated(spool.parent) == [("u1", "0.12"), ("u2", "0.315"), ("d1", "0.12"),
                                   ("d2", "0.315")]  # fmt: skip


def test_spool_unreadable_file_goes_to_failed(
    spool: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(spool / "1.log", ACC_1)
    write(spool / "2.log", b"INVITE|\xff\xfe|t|c|200|OK|1\n")  # not UTF-8: unreadable
    write(spool / "3.log", ACC_2)
    answer = watch(capsys, spool, "kamailio-acc")
    assert [(f["status"], f["rated"]) for f in answer["files"]] == [
        ("done", 1), ("failed", 0), ("done", 1),
    ]  # fmt: skip
    assert [p.name for p in (spool / "failed").iterdir()] == ["2.log"]
    assert sorted(p.name for p in (spool / "done").iterdir()) == ["1.log", "3.log"]
    assert answer["total"]["charged"] == {"EUR": "0.435"}
    assert [u["callid"] for u in answer["unpaired_at_end"]] == ["c3"]


def test_spool_same_file_twice_is_charged_once(
    spool: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(spool / "a.csv", ASTERISK)
    first = watch(capsys, spool)
    write(spool / "a.csv", ASTERISK)  # the same bytes, under the same name ...
    write(spool / "b.csv", ASTERISK)  # ... and under another
    second = watch(capsys, spool)
    assert first["total"]["charged"] == {"EUR": "0.435"}
    assert [f["status"] for f in second["files"]] == ["duplicate", "duplicate"]
    assert second["total"]["rated"] == 0
    assert rated(spool.parent) == [("u1", "0.12"), ("u2", "0.315")]
    assert sorted(p.name for p in (spool / "done").iterdir()) == ["a.csv", "a.csv.1", "b.csv"]
    ledger = [json.loads(line) for line in (spool / LEDGER_NAME).read_text().splitlines()]
    assert [(e["name"], e["status"], e["size"]) for e in ledger] == [
        ("a.csv", "done", len(ASTERISK)), ("a.csv", "duplicate", len(ASTERISK)),
        ("b.csv", "duplicate", len(ASTERISK)),
    ]  # fmt: skip
    assert len({e["sha256"] for e in ledger}) == 1
    assert ledger[0]["summary"]["lines"] == 6


def balances(capsys: pytest.CaptureFixture[str], state: Path) -> dict[str, str]:
    code, shown = cli(capsys, "accounts", "show", "--state", str(state), "--account", "acme")
    assert code == EXIT_OK
    return {b["id"]: b["amount"] for b in shown["balances"]}


def test_spool_with_state_debits_once(
    spool: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    code, _ = cli(capsys, "accounts", "create", "--state", str(state), "--account", "acme",
                  "--tenant", TENANT)  # fmt: skip
    assert code == EXIT_OK
    code, _ = cli(capsys, "accounts", "topup", "--state", str(state), "--account", "acme",
                  "--amount", "10", "--op-id", "t1")  # fmt: skip
    assert code == EXIT_OK
    write(spool / "a.csv", ASTERISK)
    first = watch(capsys, spool, "asterisk", "--state", str(state))
    assert first["total"]["charged"] == {"EUR": "0.435"}
    assert balances(capsys, state) == {"main": "9.565"}
    write(spool / "again.csv", ASTERISK)
    second = watch(capsys, spool, "asterisk", "--state", str(state))
    assert [f["status"] for f in second["files"]] == ["duplicate"]
    assert balances(capsys, state) == {"main": "9.565"}
    # The state remembers the file too (written with its debits): losing the
    # spool's ledger does not make it chargeable again.
    (spool / LEDGER_NAME).unlink()
    write(spool / "third.csv", ASTERISK)
    third = watch(capsys, spool, "asterisk", "--state", str(state))
    assert [f["status"] for f in third["files"]] == ["duplicate"]
    assert balances(capsys, state) == {"main": "9.565"}


def test_daily_summary(spool: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(spool / "a.csv", ASTERISK)
    write(spool / "b.csv", ASTERISK.replace('"u', '"v'))
    watch(capsys, spool)
    write(spool / "c.csv", ASTERISK)  # a duplicate of a.csv
    watch(capsys, spool)
    today = datetime.now(UTC).date().isoformat()
    code, answer = cli(capsys, "ingest", "--summary", str(spool), "--day", today)
    assert code == EXIT_OK
    assert answer == {"days": [{
        "day": today, "source": "asterisk", "files": 3, "duplicates": 1, "failed": 0,
        "lines": 12, "rated": 4, "skipped": 4, "rejected": 4, "charged": {"EUR": "0.87"},
    }]}  # fmt: skip
    code, answer = cli(capsys, "ingest", "--summary", str(spool), "--day", "2000-01-01")
    assert (code, answer) == (EXIT_OK, {"days": []})
