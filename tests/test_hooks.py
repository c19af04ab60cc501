"""The testing hooks the sweep tests stand on: a failure once, a hold once until released."""

from __future__ import annotations

import threading

import pytest

from study.sweep import hooks


def test_the_failure_hook_fails_each_trial_once_at_its_epoch(tmp_path):
    given = {hooks.FAIL_AT: "2", hooks.FAIL_MARKERS: str(tmp_path)}
    hooks.after_report(given, "t1", 1)  # not its epoch
    with pytest.raises(hooks.InjectedFailure, match="trial t1 after epoch 2"):
        hooks.after_report(given, "t1", 2)
    hooks.after_report(given, "t1", 2)  # retried: once only
    with pytest.raises(hooks.InjectedFailure):
        hooks.after_report(given, "t2", 2)  # another trial fails once too
    hooks.after_report({}, "t3", 2)  # no hooks: a real sweep


def test_a_held_trial_waits_until_released_and_never_holds_again(tmp_path):
    given = {hooks.HOLD_AT: "1", hooks.HOLD_MARKERS: str(tmp_path)}
    held = threading.Thread(target=hooks.after_report, args=(given, "t1", 1))
    held.start()
    while not (tmp_path / "t1").exists():  # its marker says it is waiting
        assert held.is_alive(), "it ended without holding"
        held.join(0.05)
    held.join(0.5)
    assert held.is_alive()  # still waiting
    (tmp_path / hooks.HOLD_RELEASE).touch()
    held.join(5)
    assert not held.is_alive()
    hooks.after_report(given, "t1", 1)  # restarted: its marker stands, no wait
    hooks.after_report(given, "t2", 1)  # released: no trial waits any more
    assert not (tmp_path / "t2").exists()


def test_the_driver_reads_the_hooks_from_its_environment(monkeypatch):
    monkeypatch.setenv(hooks.HOLD_AT, "3")
    monkeypatch.setenv(hooks.HOLD_MARKERS, "/somewhere")
    monkeypatch.delenv(hooks.FAIL_AT, raising=False)
    assert hooks.from_environment() == {hooks.HOLD_AT: "3", hooks.HOLD_MARKERS: "/somewhere"}
