"""``--processd`` with several shards (gatewayd/config.py) and the sharded OpenAPI document."""

from __future__ import annotations

import pytest
from openapi_spec_validator import validate

from common.envconfig import ConfigError
from gatewayd.config import ShardSpec, load_config
from gatewayd.openapi import build_openapi


def test_one_plain_target_is_the_default_unsharded_gateway() -> None:
    cfg = load_config(["--processd", "10.0.0.5:50051"], {})
    assert cfg.processd_target == "10.0.0.5:50051" and cfg.processd_shards == ()
    assert load_config([], {}).processd_shards == ()


def test_shards_from_flags_and_env() -> None:
    want = (ShardSpec((1, 10), "a:50051"), ShardSpec((137,), "b:50052"))
    cfg = load_config(["--processd", "1,optimism=a:50051", "--processd", "polygon=b:50052"], {})
    assert cfg.processd_shards == want and cfg.processd_target == "a:50051"
    env = load_config([], {"MEMPULSE_GATEWAYD_PROCESSD": "1,10=a:50051; 137=b:50052"})
    assert env.processd_shards == want


@pytest.mark.parametrize(("values", "message"), [
    (["1=a:1", "b:2"], "each is CHAINS=HOST:PORT"),
    (["1=a:1", "1=b:2"], "chain 1 is given to a:1 and b:2"),
    (["1=a:1", "10=a:1"], "a:1 is given twice"),
    (["1,1=a:1"], "chain 1 is listed twice"),
    (["nochain=a:1"], "unknown chain 'nochain'"),
    (["=a:1"], "a shard is CHAINS=HOST:PORT"),
    (["1=a"], "--processd"),
])
def test_bad_shard_lists_are_one_line_errors(values: list[str], message: str) -> None:
    argv = [arg for v in values for arg in ("--processd", v)]
    with pytest.raises(ConfigError) as info:
        load_config(argv, {})
    assert message in str(info.value)


def test_sharded_document_is_valid_openapi() -> None:
    doc = build_openapi(sharded=True)
    validate(doc)
    tx_list = doc["components"]["schemas"]["TransactionList"]
    assert "next_cursor" in tx_list["properties"] and "next_cursor" not in tx_list["required"]
    assert "next_cursor" not in build_openapi()["components"]["schemas"]["TransactionList"]["properties"]


def _query_params(doc: dict, path: str) -> list[str]:
    return [p["name"] for p in doc["paths"][path]["get"]["parameters"] if p["in"] == "query"]


@pytest.mark.parametrize("path", ["/transactions", "/transactions/all", "/blocks/recent", "/events"])
def test_cursor_is_a_parameter_of_sharded_gateways_only(path: str) -> None:
    assert "cursor" in _query_params(build_openapi(sharded=True), path)
    assert "cursor" not in _query_params(build_openapi(), path)
