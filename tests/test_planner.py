"""Round planning, trimming and top-up focus: pure functions of counts."""

from __future__ import annotations

from factory.builder.planner import fixed_round, plan_round, top_up_focus, trim_to_target
from factory.records import Record


def test_first_round_asks_for_the_deficit_with_headroom() -> None:
    assert plan_round({"a": 100, "b": 20}, {}, {}, budget_left=1000) == {"a": 105, "b": 21}


def test_later_rounds_divide_the_deficit_by_the_acceptance_seen() -> None:
    # a kept 50 of 100 sent (rate 0.5): 50 missing -> 100 prompts (+5%); b is done.
    assert plan_round({"a": 100, "b": 10}, {"a": 50, "b": 12}, {"a": 100, "b": 12}, budget_left=1000) == {"a": 105}


def test_a_hopeless_bucket_is_capped_at_the_minimum_rate() -> None:
    assert plan_round({"a": 10}, {"a": 0}, {"a": 50}, budget_left=1000) == {"a": 105}


def test_a_short_budget_is_shared_in_proportion_to_need() -> None:
    plan = plan_round({"a": 30, "b": 10}, {}, {}, budget_left=20)
    assert sum(plan.values()) == 20 and plan["a"] > plan["b"] > 0
    assert plan_round({"a": 30}, {}, {}, budget_left=0) == {}


def test_fixed_round_sends_exactly_n_per_bucket() -> None:
    assert fixed_round({"a": 5, "b": 5}, {"a": 2}, 4) == {"a": 2, "b": 4}
    assert fixed_round({"a": 5}, {"a": 4}, 4) == {}


def test_trim_keeps_generation_order_and_rejects_the_surplus() -> None:
    rows = [Record({"text": f"t{i}"}, "ab"[i % 2], id=str(i)) for i in range(7)]
    final, surplus = trim_to_target(rows, {"a": 2, "b": 3}, lambda r: r.label or "")
    assert [r.id for r in final] == ["0", "1", "2", "3", "5"]
    assert [(r.id, r.stage, r.reason) for r in surplus] == [("4", "target", "over_target"), ("6", "target", "over_target")]


def test_top_up_focus_repeats_each_thin_cluster_as_often_as_wanted() -> None:
    funnel = [{"stage": "exact_dedup"},
              {"stage": "rebalance", "stats": {"top_up": {"a": [{"examples": ["x", "y"], "wanted": 2}],
                                                          "b": [{"examples": ["z"], "wanted": 1}]}}}]
    assert top_up_focus(funnel) == {"a": [["x", "y"], ["x", "y"]], "b": [["z"]]}
