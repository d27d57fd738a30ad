"""server.fleet: the reload order API replicas share, and each replica's own file names."""

from __future__ import annotations

from pathlib import Path

from mlops.settings import load_settings
from server.fleet import FleetOrders, api_instance
from server.gunicorn_app import metrics_dir_for, switch_file_for


def test_an_order_reaches_every_other_replica_once_and_not_its_maker(tmp_path: Path) -> None:
    path = tmp_path / "fleet-order.json"
    a, b, c = (FleetOrders(path, name) for name in ("host-9700", "host-9701", "host-9702"))
    for replica in (a, b, c):
        replica.start()
    assert a.pending() is None and b.pending() is None  # nothing on file yet
    made = a.publish("run-1", "registry alias champion; hot reload")
    assert made["generation"] == 1 and made["origin"] == "host-9700"
    assert a.pending() is None  # its own
    order = b.pending()
    assert order is not None and order["run_id"] == "run-1"
    assert b.pending() is None  # once
    assert c.pending()["generation"] == 1
    assert b.publish("run-2", "x")["generation"] == 2  # a later order from another replica counts up
    assert a.pending()["run_id"] == "run-2" and c.pending()["run_id"] == "run-2"


def test_a_starting_replica_takes_the_order_on_file_as_seen(tmp_path: Path) -> None:
    """A fresh master serves what its settings name (RUN_ID or the alias), as after SIGHUP or a restart."""
    path = tmp_path / "fleet-order.json"
    FleetOrders(path, "host-9700").publish("run-1", "x")
    late = FleetOrders(path, "host-9701")
    late.start()
    assert late.pending() is None
    path.write_text("{not json")  # a torn or foreign file is no order
    assert late.pending() is None


def test_replicas_sharing_a_state_folder_keep_their_own_files(tmp_path: Path) -> None:
    one, two = (load_settings("local", state_dir=tmp_path, api_port=port) for port in (9700, 9701))
    assert api_instance(one) != api_instance(two)
    assert switch_file_for(one) != switch_file_for(two)
    assert metrics_dir_for(one) != metrics_dir_for(two)  # a starting master empties its own only
