"""The MQTT topic scheme (``pw/v1/...``) shared by every service."""

from __future__ import annotations

from dataclasses import dataclass

from parkwatch.slugs import is_slug

PREFIX = "pw/v1"
INGEST_SHARE_GROUP = "ingest"


class TopicError(ValueError):
    pass


def _check(**slugs: str) -> None:
    for what, value in slugs.items():
        if not is_slug(value):
            raise TopicError(f"{what} {value!r} is not a slug ([a-z0-9][a-z0-9_-]{{0,63}})")


def data_topic(park: str, gateway: str) -> str:
    _check(park=park, gateway=gateway)
    return f"{PREFIX}/{park}/{gateway}/data"


def status_topic(park: str, gateway: str) -> str:
    _check(park=park, gateway=gateway)
    return f"{PREFIX}/{park}/{gateway}/status"


def alert_topic(park: str, kind: str) -> str:
    _check(park=park, kind=kind)
    return f"{PREFIX}/{park}/alerts/{kind}"


def deadletter_topic(park: str) -> str:
    _check(park=park)
    return f"{PREFIX}/{park}/deadletter"


# Dead letters of messages that name no configured park go to this one topic, never to one
# the sender chose: "_" is outside the park slugs, so no park can be called that, and it
# still matches pw/v1/+/deadletter (subscribers' filters and the broker's ACL).
UNKNOWN_PARK_DEADLETTER = f"{PREFIX}/_unknown/deadletter"

ALL_DATA = f"{PREFIX}/+/+/data"


def data_filter(park: str) -> str:
    """Every gateway's data topic of one park."""
    _check(park=park)
    return f"{PREFIX}/{park}/+/data"


def alerts_filter(park: str) -> str:
    """Every kind of alert of one park."""
    _check(park=park)
    return f"{PREFIX}/{park}/alerts/+"


def status_filter(park: str) -> str:
    """Every gateway's (retained) status topic of one park."""
    _check(park=park)
    return f"{PREFIX}/{park}/+/status"


ALL_DEADLETTERS = f"{PREFIX}/+/deadletter"


def shared(topic_filter: str, group: str = INGEST_SHARE_GROUP) -> str:
    """An MQTT v5 shared subscription: the broker spreads messages over the group's members."""
    return f"$share/{group}/{topic_filter}"


@dataclass(frozen=True, slots=True)
class DataTopic:
    park: str
    gateway: str


def parse_data_topic(topic: str) -> DataTopic:
    parts = topic.split("/")
    if len(parts) != 5 or f"{parts[0]}/{parts[1]}" != PREFIX or parts[4] != "data":
        raise TopicError(f"{topic!r} is not a data topic ({PREFIX}/{{park}}/{{gateway}}/data)")
    _check(park=parts[2], gateway=parts[3])
    return DataTopic(parts[2], parts[3])
