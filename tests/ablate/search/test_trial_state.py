"""A trial's saved state: whole or set aside, never fatal."""

from __future__ import annotations

from ablate.search import trial_state


def test_a_saved_state_comes_back_with_its_history(tmp_path):
    history = [{"epoch": 1.0, "val/hm": 50.0}, {"epoch": 2.0, "val/hm": 51.5}]
    trial_state.save(tmp_path, "k1", trial_state.Saved({"epoch": 2, "rows": []}, history))
    saved = trial_state.load(tmp_path, "k1", "t001")
    assert saved.epoch == 2 and saved.history == history
    assert not list((tmp_path / "state").glob(".tmp-*"))  # written whole, nothing left over


def test_no_state_is_a_new_trial(tmp_path):
    saved = trial_state.load(tmp_path, "k2", "t002")
    assert saved.state is None and saved.history == [] and saved.epoch == 0


def test_an_unreadable_state_is_set_aside_and_named(tmp_path, capsys):
    trial_state.save(tmp_path, "k3", trial_state.Saved({"epoch": 4}, [{"epoch": 4.0}]))
    path = tmp_path / "state/k3.pt"
    path.write_bytes(path.read_bytes()[:64])
    saved = trial_state.load(tmp_path, "k3", "t003")
    assert saved.state is None and saved.history == []
    assert not path.exists() and (tmp_path / "state/k3.pt.corrupt").exists()
    out = capsys.readouterr().out
    assert "t003: its saved state cannot be read" in out and f"{path}.corrupt" in out
    assert "trains again from epoch 1" in out
