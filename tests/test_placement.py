"""mediaserver/placement.py: node records, the choice of a room's node, dead nodes (pure)."""

from __future__ import annotations

import pytest

from mediaserver.placement import (
    CpuMeter,
    Decision,
    NodeLoad,
    NodeRecord,
    choose_node,
    dead_nodes,
    decide,
    heartbeat_record,
    rooms_to_replace,
)

TTL = 3.0


def node(node_id: str, participants: int = 0, rooms: int = 0, cpu: float = 0.0, *,
         draining: bool = False, beat: float = 0.0) -> NodeRecord:
    return heartbeat_record(node_id, f"http://{node_id}.example:8080",
                            NodeLoad(rooms, participants, cpu), draining, beat, TTL)


def chosen_id(records: list[NodeRecord], now: float, prefer: str | None = None) -> str | None:
    record = choose_node(records, now, prefer)
    return record.node_id if record is not None else None


def by_id(*records: NodeRecord) -> dict[str, NodeRecord]:
    return {r.node_id: r for r in records}


def test_a_record_goes_through_json_unchanged() -> None:
    record = node("a", participants=12, rooms=3, cpu=0.4375, draining=True, beat=1000.5)
    text = record.to_json()
    assert text == ('{"id":"a","url":"http://a.example:8080","rooms":3,"participants":12,'
                    '"cpu":0.4375,"draining":true,"expiresAt":1003.5}')
    assert NodeRecord.parse(text.encode()) == record


@pytest.mark.parametrize(("text", "message"), [
    ("[1]", "node record: not a JSON object"),
    ("{", "node record: not JSON"),
    ('{"url":"u","rooms":0,"participants":0,"cpu":0,"draining":false,"expiresAt":1}',
     "node record: 'id' must be a non-empty string"),
    ('{"id":"a","url":"u","rooms":-1,"participants":0,"cpu":0,"draining":false,'
     '"expiresAt":1}', "node record: 'rooms' must be an integer >= 0"),
    ('{"id":"a","url":"u","rooms":0,"participants":true,"cpu":0,"draining":false,'
     '"expiresAt":1}', "node record: 'participants' must be an integer >= 0"),
    ('{"id":"a","url":"u","rooms":0,"participants":0,"cpu":"x","draining":false,'
     '"expiresAt":1}', "node record: 'cpu' must be a number >= 0"),
    ('{"id":"a","url":"u","rooms":0,"participants":0,"cpu":0,"draining":1,'
     '"expiresAt":1}', "node record: 'draining' must be true or false"),
    ('{"id":"a","url":"u","rooms":0,"participants":0,"cpu":0,"draining":false}',
     "node record: 'expiresAt' must be a number >= 0"),
])
def test_a_malformed_record_names_its_field(text: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        NodeRecord.parse(text)
    assert str(caught.value) == message


def test_the_least_loaded_live_node_that_is_not_draining_gets_a_new_room() -> None:
    records = [node("a", participants=9, rooms=2), node("b", participants=3, rooms=1),
               node("c", participants=1, draining=True), node("d", beat=-5.0)]
    # d's heartbeat stopped (expired at -2.0); c drains: b carries the fewest people.
    assert chosen_id(records, now=1.0) == "b"


def test_a_busy_cpu_ranks_after_every_node_with_headroom() -> None:
    records = [node("a", participants=1, cpu=0.95), node("b", participants=40, cpu=0.30)]
    assert chosen_id(records, now=0.0) == "b"
    both_busy = [node("a", participants=1, cpu=0.95), node("b", participants=40, cpu=1.2)]
    assert chosen_id(both_busy, now=0.0) == "a"


def test_on_a_tie_the_node_the_join_arrived_at_keeps_the_room_else_the_smallest_id() -> None:
    records = [node("c", rooms=1), node("a", rooms=1), node("b", rooms=1)]
    assert chosen_id(records, 0.0, prefer="b") == "b"
    assert chosen_id(records, 0.0) == "a"
    # A preference never outweighs load.
    assert chosen_id([node("a"), node("b", rooms=2)], 0.0, prefer="b") == "a"


def test_no_node_takes_a_room_when_every_node_drains_or_is_dead() -> None:
    assert choose_node([node("a", draining=True), node("b", beat=-10.0)], now=0.0) is None
    assert choose_node([], now=0.0) is None


def test_a_room_stays_on_its_live_node_even_while_that_node_drains() -> None:
    records = by_id(node("a", participants=50, draining=True), node("b"))
    assert decide("a", records, now=1.0, prefer="b") == Decision("a", write=False,
                                                                  expected="a")


def test_an_unplaced_room_is_placed_and_the_write_expects_no_holder() -> None:
    records = by_id(node("a", participants=5), node("b"))
    assert decide(None, records, now=1.0, prefer="a") == Decision("b", write=True,
                                                                   expected=None)


def test_a_dead_nodes_room_is_placed_anew_replacing_exactly_that_node() -> None:
    # a beat at 0, 1 and 2 and then stopped; b goes on beating.
    history = [node("a", beat=t) for t in (0.0, 1.0, 2.0)]
    records = by_id(history[-1], node("b", participants=4, beat=4.5))
    assert decide("a", records, now=4.9, prefer="b").node_id == "a"  # expires at 5.0
    assert decide("a", records, now=5.0, prefer="b") == Decision("b", write=True,
                                                                  expected="a")
    assert decide("gone", records, now=5.0) == Decision("b", write=True, expected="gone")
    assert decide("a", by_id(history[-1]), now=6.0) == Decision(None, write=True,
                                                                 expected="a")


def test_dead_nodes_and_the_rooms_to_place_again_over_a_sequence_of_heartbeats() -> None:
    placements = {"bed-1": "a", "bed-2": "b", "bed-3": "a", "bed-4": "x"}
    registered = ["a", "b", "x"]  # x registered once, its record long gone
    records = by_id(node("a", beat=0.0), node("b", beat=0.0))
    assert dead_nodes(registered, records, now=2.0) == ("x",)
    assert rooms_to_replace(placements, records, now=2.0) == ("bed-4",)
    records = by_id(node("a", beat=0.0), node("b", beat=2.5))  # only b beat again
    assert dead_nodes(registered, records, now=3.0) == ("a", "x")
    assert rooms_to_replace(placements, records, now=3.0) == ("bed-1", "bed-3", "bed-4")


def test_the_cpu_share_is_cpu_seconds_per_wall_second_between_samples() -> None:
    meter = CpuMeter()
    assert meter.sample(10.0, now=100.0) == 0.0
    assert meter.sample(10.5, now=101.0) == pytest.approx(0.5)
    assert meter.sample(12.5, now=102.0) == pytest.approx(2.0)  # two cores
    assert meter.sample(12.5, now=102.0) == pytest.approx(2.0)  # no time passed: kept
