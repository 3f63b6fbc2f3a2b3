"""Several objectives: the Pareto front (dominance with ties, mixed goals), the study's answer
as the summary and the parent run give it, and Optuna's multi-objective warm start."""

from __future__ import annotations

import csv
import io
from types import SimpleNamespace

import optuna
import pytest

from ablate.search import answer, pareto, space
from ablate.search.outcome import StudyOutcome, TrialOutcome
from ablate.spec import samplers

MAX_MIN = ("maximize", "minimize")


def test_dominance_needs_at_least_as_good_everywhere_and_better_once():
    assert pareto.dominates([80, 100], [70, 200], MAX_MIN)
    assert pareto.dominates([80, 100], [80, 200], MAX_MIN)  # a tie on one objective
    assert not pareto.dominates([80, 100], [80, 100], MAX_MIN)  # equal: neither way
    assert not pareto.dominates([80, 300], [70, 200], MAX_MIN)  # better on one, worse on one
    assert pareto.dominates([1, 1], [2, 2], ("minimize", "minimize"))
    assert not pareto.dominates([1, 1], [2, 2], ("maximize", "maximize"))


def test_the_front_keeps_ties_and_drops_what_is_dominated():
    points = [
        [80.0, 100.0],  # front
        [80.0, 100.0],  # the same point again: neither beats the other, both stay
        [85.0, 400.0],  # front: more accurate, costs more
        [70.0, 100.0],  # dominated by 0 (equal cost, less accurate)
        [85.0, 500.0],  # dominated by 2 (equal accuracy, costs more)
        [60.0, 50.0],  # front: cheapest
    ]
    assert pareto.non_dominated(points, MAX_MIN) == [0, 1, 2, 5]
    assert pareto.non_dominated(points, ("minimize", "maximize")) == [3, 4, 5]
    assert pareto.non_dominated([], MAX_MIN) == []


def test_one_objective_leaves_the_best_points_only():
    assert pareto.non_dominated([[3.0], [5.0], [5.0], [1.0]], ("maximize",)) == [1, 2]


def spec_of(*objectives: tuple[str, str]) -> SimpleNamespace:
    metrics = tuple(SimpleNamespace(name=n, goal=g) for n, g in objectives)
    return SimpleNamespace(objectives=metrics)


def outcome(*trials: tuple[str, str, dict[str, float]]) -> StudyOutcome:
    return StudyOutcome(
        [TrialOutcome(f"id{n}", n, s, 2, {"lr": i / 10}, m) for i, (n, s, m) in enumerate(trials)]
    )


def test_the_answer_of_several_objectives_is_the_front_of_completed_trials():
    found = answer.find(
        spec_of(("val/hm", "maximize"), ("cost/params", "minimize")),  # type: ignore[arg-type]
        outcome(
            ("t000", "completed", {"val/hm": 70.0, "cost/params": 100.0, "test/hm": 69.0}),
            ("t001", "completed", {"val/hm": 80.0, "cost/params": 400.0}),
            ("t002", "completed", {"val/hm": 75.0, "cost/params": 400.0}),  # dominated
            ("t003", "pruned", {"val/hm": 99.0, "cost/params": 1.0}),  # not finished
            ("t004", "completed", {"val/hm": 99.0}),  # lacks an objective
        ),
    )
    assert [t.name for t in found.members] == ["t001", "t000"]  # by val/hm, best first
    assert found.candidates == 3
    text = "\n".join(answer.summary_lines(found, [1, 2]))
    assert "Pareto front: 2 of 3 completed configurations" in text
    assert "t000  val/hm = 70  cost/params = 100  (lr=0.0)" in text
    assert answer.run_tags(found)["ablate.pareto_front"] == "t001 t000"
    assert answer.run_metrics(found) == {
        "pareto/t001/val/hm": 80.0,
        "pareto/t001/cost/params": 400.0,
        "pareto/t000/val/hm": 70.0,
        "pareto/t000/cost/params": 100.0,
    }
    rows = list(csv.DictReader(io.StringIO(answer.front_table(found))))
    assert [r["trial"] for r in rows] == ["t001", "t000"]
    assert rows[1]["test/hm"] == "69.0" and rows[0]["test/hm"] == ""


def test_the_answer_of_one_objective_is_the_best_trial_with_all_its_metrics():
    found = answer.find(
        spec_of(("cost/epoch_s", "minimize")),  # type: ignore[arg-type]
        outcome(
            ("t000", "completed", {"cost/epoch_s": 3.0, "val/hm": 50.0}),
            ("t001", "completed", {"cost/epoch_s": 2.0, "val/hm": 40.0}),
        ),
    )
    assert [t.name for t in found.members] == ["t001"]
    assert answer.run_metrics(found) == {"best/cost/epoch_s": 2.0, "best/val/hm": 40.0}
    assert answer.run_tags(found) == {
        "ablate.best_trial": "t001",
        "ablate.best_config": '{"lr": 0.1}',
    }
    assert answer.summary_lines(found, [1])[0].startswith("Best configuration: t001, cost/epoch_s")


def test_no_completed_trial_answers_nothing():
    found = answer.find(spec_of(("val/hm", "maximize")), outcome())  # type: ignore[arg-type]
    assert found.members == [] and answer.summary_lines(found, [1]) == []
    assert answer.run_tags(found) == {}


def test_a_warm_start_carries_every_objective():
    storage = space.new_storage()
    dists = {"lr": optuna.distributions.FloatDistribution(0.001, 1.0, log=True)}
    optuna.create_study(storage=storage, study_name=space.STUDY_NAME, directions=list(MAX_MIN))
    space.add_finished(storage, dists, [{"lr": 0.01}, {"lr": 0.1}], [[70.0, 9.0], [80.0, 8.0]])
    study = optuna.load_study(study_name=space.STUDY_NAME, storage=storage)
    assert [t.values for t in study.trials] == [[70.0, 9.0], [80.0, 8.0]]
    assert [t.number for t in study.best_trials] == [1]


@pytest.mark.parametrize("algorithm", ["tpe", "random", "grid"])
def test_every_sampler_samples_for_several_objectives(algorithm):
    """Each sampler of spec.samplers runs a two-objective study (Optuna's ask and tell)."""
    param = SimpleNamespace(key="lr", is_discrete=True, values=(0.01, 0.1, 1.0))
    spec = SimpleNamespace(
        search_parameters=lambda: [param],
        search=SimpleNamespace(seed=0, trials=6),
        sampler=samplers.SAMPLERS[algorithm],
    )
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        directions=list(MAX_MIN),
        sampler=space.make_sampler(spec),  # type: ignore[arg-type]
    )
    dists = space.to_distributions([param])  # type: ignore[list-item]
    for _ in range(2):  # fewer than the grid's 3 points: a full grid stops the study
        trial = study.ask(dists)
        study.tell(trial, [trial.params["lr"], -trial.params["lr"]])
    assert len(study.best_trials) >= 1


def test_ray_s_searcher_is_warm_started_with_every_objective():
    """An extension's finished configurations reach Ray's OptunaSearch's own study with a value
    per objective, and the searcher then proposes new configurations."""
    from ablate.search.resume import Prior
    from ablate.search.tuning import NumberedOptunaSearch

    dists = {"lr": optuna.distributions.CategoricalDistribution([0.01, 0.1, 1.0])}
    prior = Prior([{"lr": 0.01}, {"lr": 0.1}], [[70.0, 9.0], [80.0, 8.0]])
    searcher = NumberedOptunaSearch(
        space=dists,
        sampler=optuna.samplers.RandomSampler(seed=0),
        metric=["val/hm", "cost/params"],
        mode=["max", "min"],
        finished=prior,
    )
    study = optuna.load_study(study_name=space.STUDY_NAME, storage=searcher.optuna_storage)
    assert [t.values for t in study.trials] == [[70.0, 9.0], [80.0, 8.0]]
    assert searcher.suggest("trial-a")["lr"] in (0.01, 0.1, 1.0)
    searcher.on_trial_complete("trial-a", {"val/hm": 75.0, "cost/params": 1.0})
    assert study.trials[-1].values == [75.0, 1.0]
