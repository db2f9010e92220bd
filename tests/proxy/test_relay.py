"""The relay core with a fake clock: routes, pairing, and each limit costing only its own pair."""

from __future__ import annotations

import pytest

from bitdust.p2p.preamble import Kind, Preamble
from bitdust.proxy.relay import (
    Close,
    DropReason,
    Notify,
    Pair,
    Pause,
    Relay,
    RelayLimits,
    RelayRefused,
    Resume,
    route_id,
)

ALICE = "http://host-a.com/alice.xml"
CAROL = "http://host-a.com/carol.xml"
NOW = 1000.0


def actions(relay: Relay) -> list:
    found = []
    while (action := relay.next_action()) is not None:
        found.append(action)
    return found


def connect(relay: Relay, conn: int, idurl: str, now: float = NOW) -> str:
    """A peer on ``conn`` asks for ``idurl``'s route; returns the token the node is told."""
    relay.opened(conn, Preamble(Kind.CONNECT, route_id(idurl)), now)
    [notify] = actions(relay)
    assert notify == Notify(idurl, notify.token)
    return notify.token


def pair(relay: Relay, peer: int, routed: int, idurl: str = ALICE) -> None:
    token = connect(relay, peer, idurl)
    relay.opened(routed, Preamble(Kind.ACCEPT, token), NOW)
    assert actions(relay) == [Pair(peer, routed)]


@pytest.fixture
def relay() -> Relay:
    relay = Relay(RelayLimits(routes=2, streams_per_route=2, buffered_per_route=1000))
    relay.register(ALICE, NOW)
    relay.register(CAROL, NOW)
    return relay


def test_a_peer_is_paired_with_the_routed_node_that_took_its_token(relay: Relay):
    pair(relay, 1, 2)
    assert relay.stats()[0]["connections"] == 1


def test_a_route_nobody_registered_is_closed_with_the_reason(relay: Relay):
    relay.opened(1, Preamble(Kind.CONNECT, route_id("http://host-x.com/x.xml")), NOW)
    assert actions(relay) == [Close(1, DropReason.UNKNOWN_ROUTE)]


def test_a_guessed_token_is_refused_and_the_waiting_peer_is_untouched(relay: Relay):
    token = connect(relay, 1, ALICE)
    relay.opened(2, Preamble(Kind.ACCEPT, "0" * 32), NOW)
    assert actions(relay) == [Close(2, DropReason.UNKNOWN_TOKEN)]
    relay.opened(3, Preamble(Kind.ACCEPT, token), NOW)
    assert actions(relay) == [Pair(1, 3)]


def test_a_token_is_good_once(relay: Relay):
    pair(relay, 1, 2)
    token_reused = Preamble(Kind.ACCEPT, "f" * 32)
    relay.opened(4, token_reused, NOW)
    assert actions(relay) == [Close(4, DropReason.UNKNOWN_TOKEN)]


def test_a_peer_the_routed_node_never_takes_is_closed_at_the_accept_timeout(relay: Relay):
    connect(relay, 1, ALICE)
    assert relay.get_timer() == NOW + relay.limits.accept_timeout
    relay.handle_timer(NOW + relay.limits.accept_timeout - 0.1)
    assert actions(relay) == []
    relay.handle_timer(NOW + relay.limits.accept_timeout)
    assert actions(relay) == [Close(1, DropReason.ACCEPT_TIMEOUT)]
    assert relay.stats()[0]["connections"] == 0


def test_connections_beyond_a_routes_limit_are_refused_and_other_routes_still_served(
    relay: Relay,
):
    pair(relay, 1, 2)
    pair(relay, 3, 4)
    relay.opened(5, Preamble(Kind.CONNECT, route_id(ALICE)), NOW)
    assert actions(relay) == [Close(5, DropReason.TOO_MANY_STREAMS)]
    pair(relay, 6, 7, CAROL)


def test_routes_beyond_the_routes_limit_are_refused_with_the_reason(relay: Relay):
    with pytest.raises(RelayRefused, match="routes 2 nodes already"):
        relay.register("http://host-a.com/dave.xml", NOW)
    assert relay.register(ALICE, NOW + 1) == route_id(ALICE)  # renewing is not a new route


def test_a_route_over_its_rate_is_paused_then_resumed_when_its_bucket_refills():
    relay = Relay(RelayLimits(bytes_per_second=1000, burst_seconds=1))
    relay.register(ALICE, NOW)
    pair(relay, 1, 2)
    relay.relayed(1, 900, NOW)
    assert actions(relay) == []
    relay.relayed(1, 600, NOW)  # 500 bytes over: half a second of rate
    assert actions(relay) == [Pause(1)]
    assert relay.get_timer() == pytest.approx(NOW + 0.5)
    relay.handle_timer(NOW + 0.5)
    assert actions(relay) == [Resume(1)]
    assert relay.stats()[0]["bytes_relayed"] == 1500


def test_a_receiver_that_stops_reading_loses_its_pair_and_only_its_pair(relay: Relay):
    pair(relay, 1, 2)
    pair(relay, 3, 4)
    relay.blocked(2, NOW)  # the routed node on 2 stopped reading
    relay.handle_timer(NOW + relay.limits.stall_timeout - 1)
    assert actions(relay) == []
    relay.handle_timer(NOW + relay.limits.stall_timeout)
    assert set(actions(relay)) == {Close(2, DropReason.STALLED), Close(1, DropReason.STALLED)}
    assert relay.stats()[0]["connections"] == 1 and relay.stats()[0]["dropped"] == 1
    relay.unblocked(4)
    relay.relayed(3, 10, NOW + 31)
    assert actions(relay) == []


def test_a_receiver_that_drains_in_time_keeps_its_pair(relay: Relay):
    pair(relay, 1, 2)
    relay.blocked(2, NOW)
    relay.unblocked(2)
    relay.handle_timer(NOW + relay.limits.stall_timeout + 1)
    assert actions(relay) == []


def test_more_buffered_than_the_route_may_hold_drops_that_pair(relay: Relay):
    pair(relay, 1, 2)
    pair(relay, 3, 4, CAROL)
    relay.buffered(2, 600, NOW)
    relay.buffered(4, 900, NOW)  # another route's buffer does not count against Alice
    assert actions(relay) == []
    relay.buffered(1, 500, NOW)
    assert set(actions(relay)) == {
        Close(1, DropReason.OVER_BUFFER),
        Close(2, DropReason.OVER_BUFFER),
    }
    assert [(r["connections"], r["dropped"]) for r in relay.stats()] == [(0, 1), (1, 0)]


def test_one_side_closing_closes_its_partner(relay: Relay):
    pair(relay, 1, 2)
    relay.closed(2)
    assert actions(relay) == [Close(1, DropReason.PARTNER_CLOSED)]
    relay.closed(1)  # the shell reports it closed in turn: nothing more
    assert actions(relay) == []


def test_a_route_not_renewed_within_its_lease_ends_with_its_connections(relay: Relay):
    pair(relay, 1, 2)
    relay.register(CAROL, NOW + 60)
    relay.handle_timer(NOW + relay.limits.lease)
    assert set(actions(relay)) == {
        Close(1, DropReason.ROUTE_CLOSED),
        Close(2, DropReason.ROUTE_CLOSED),
    }
    assert [r["idurl"] for r in relay.stats()] == [CAROL]


def test_bytes_and_closes_are_counted_beyond_the_routes_that_made_them(relay: Relay):
    pair(relay, 1, 2)
    relay.relayed(1, 700, NOW)
    relay.opened(3, Preamble(Kind.ACCEPT, "0" * 32), NOW)
    relay.unregister(ALICE)
    actions(relay)
    assert relay.bytes_relayed == 700 and [r["idurl"] for r in relay.stats()] == [CAROL]
    assert relay.closed_by_reason == {DropReason.UNKNOWN_TOKEN: 1, DropReason.ROUTE_CLOSED: 2}


def test_a_closed_pairs_buffered_bytes_no_longer_count_against_its_route(relay: Relay):
    pair(relay, 1, 2)
    relay.buffered(2, 900, NOW)
    relay.closed(1)
    actions(relay)
    pair(relay, 3, 4)
    relay.buffered(4, 900, NOW)  # 900 of 1000: the closed pair's 900 are gone with it
    assert actions(relay) == []


def test_the_timer_follows_deadlines_as_they_come_and_go(relay: Relay):
    expiry = NOW + relay.limits.lease
    assert relay.get_timer() == expiry
    pair(relay, 1, 2)
    relay.blocked(2, NOW + 1)
    assert relay.get_timer() == NOW + 1 + relay.limits.stall_timeout
    relay.unblocked(2)
    assert relay.get_timer() == expiry
    relay.unregister(ALICE)
    relay.unregister(CAROL)
    assert relay.get_timer() is None
