"""Who may link to the login server's LAN port, and how links stay honest:
whiteip (empty = loopback only), announced addresses, names, registration
deadline, heartbeats, paths cut without a FIN, backoff after a refusal, mutual
TLS. Real sockets, real login and game servers."""

from __future__ import annotations

import asyncio
import logging
import socket
from pathlib import Path

import pytest
import trustme

from conftest import Logins, until
from lan_peer import LAN, TcpProxy, fake_link, non_loopback_ip
from linked_system import (
    game_config,
    linked_games,
    login_request,
    play,
    read_keys,
    start_login,
    start_system,
)
from serverlink.net.client import FrameClient
from serverlink.net.session import SessionDeps
from serverlink.net.stats import NetStats
from serverlink.net.tls import TlsConfig
from serverlink.protocol import packets as pk
from serverlink.protocol.status import LoginStatus
from serverlink.servers.game import GameServer
from serverlink.servers.link import LinkConfig
from serverlink.servers.login import LoginConfig, LoginServer
from serverlink.store.admin import add_whiteip_db, init_db, seed_db


async def test_empty_whiteip_lets_only_loopback_link(logins: Logins, sqlite_url: str) -> None:
    other = non_loopback_ip()
    if other is None:
        pytest.skip("this machine has no non-loopback address to connect from")
    login = await logins(sqlite_url, lan_host="0.0.0.0")
    intruder = await fake_link(login.lan_port, f"evil@{other}:1", host=other)
    await intruder.wait_closed()
    assert login.lan.rejected_links == 1 and not login.lan.links
    local = await fake_link(login.lan_port, "game@127.0.0.1:1")
    await until(lambda: len(login.lan.links) == 1)
    local.close("done")


async def test_lan_allow_any_admits_other_addresses_and_warns(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    other = non_loopback_ip()
    if other is None:
        pytest.skip("this machine has no non-loopback address to connect from")
    await init_db(sqlite_url)
    with caplog.at_level(logging.WARNING, "serverlink"):
        login = await start_login(sqlite_url, lan_host="0.0.0.0", lan_allow_any=True)
    try:
        assert any("--lan-allow-any" in r.getMessage() for r in caplog.records)
        link = await fake_link(login.lan_port, f"game@{other}:1", host=other)
        await until(lambda: len(login.lan.links) == 1)
        link.close("done")
    finally:
        await login.stop()


async def test_a_whiteip_row_admits_that_address_and_nothing_else(sqlite_url: str) -> None:
    other = non_loopback_ip()
    if other is None:
        pytest.skip("this machine has no non-loopback address to connect from")
    await init_db(sqlite_url)
    await add_whiteip_db(sqlite_url, other)
    login = await start_login(sqlite_url, lan_host="0.0.0.0")
    try:
        admitted = await fake_link(login.lan_port, f"game@{other}:1", host=other)
        await until(lambda: len(login.lan.links) == 1)
        refused = await fake_link(login.lan_port, "local@127.0.0.1:2")  # not in the table
        await refused.wait_closed()
        assert login.lan.rejected_links == 1
        admitted.close("done")
    finally:
        await login.stop()


@pytest.fixture
async def login(logins: Logins, sqlite_url: str) -> LoginServer:
    """A login server of the default configuration on an empty SQLite database."""
    return await logins(sqlite_url)


async def test_a_registration_announcing_someone_elses_address_is_refused(
    login: LoginServer,
) -> None:
    evil = await fake_link(login.lan_port, "evil@6.6.6.6:6666")
    await evil.wait_closed()
    assert login.lan.rejected_links == 1
    assert login.stats.errors["foreign_address"] == 0  # counted on the LAN side
    assert login.lan.listener.stats.errors["foreign_address"] == 1
    own = await fake_link(login.lan_port, "game@127.0.0.1:4242")
    await until(lambda: len(login.lan.links) == 1)
    assert login.lan.links[0].address == ("127.0.0.1", 4242)
    own.close("done")


def test_the_lan_port_binds_loopback_by_default_in_config_and_cli() -> None:
    from click.testing import CliRunner

    from serverlink.cli import main_group

    assert LoginConfig().lan_host is None and LoginConfig().host == "127.0.0.1"  # LAN: host
    shown = CliRunner().invoke(main_group, ["config", "show", "login"]).output
    assert 'host = "127.0.0.1"' in shown
    assert "lan_host is not set" in shown  # then it is --host: 127.0.0.1


async def test_a_second_registration_under_a_linked_name_is_refused_until_it_is_gone(
    login: LoginServer,
) -> None:
    first = await fake_link(login.lan_port, "game@127.0.0.1:7000")
    await until(lambda: len(login.lan.links) == 1)
    second = await fake_link(login.lan_port, "game@127.0.0.1:7000")
    await second.wait_closed()
    assert login.lan.listener.stats.errors["name_in_use"] == 1
    first.close("going")
    await until(lambda: not login.lan.links)
    third = await fake_link(login.lan_port, "game@127.0.0.1:7000")
    await until(lambda: len(login.lan.links) == 1)
    third.close("done")


async def test_a_connection_that_never_registers_is_closed_at_the_deadline(
    logins: Logins,
    sqlite_url: str,
) -> None:
    login = await logins(sqlite_url, lan_register_deadline=1.0)
    loop = asyncio.get_running_loop()
    silent = [socket.create_connection(("127.0.0.1", login.lan_port)) for _ in range(3)]
    for sock in silent:
        sock.setblocking(False)
        async with asyncio.timeout(5):
            assert await loop.sock_recv(sock, 1) == b""  # closed by the server
        sock.close()
    assert login.lan.listener.stats.errors["login_deadline"] == 3


async def test_a_key_store_proof_before_registering_drops_only_that_peer(
    login: LoginServer,
) -> None:
    linked = await fake_link(login.lan_port, "game@127.0.0.1:7000")
    await until(lambda: len(login.lan.links) == 1)
    loop = asyncio.get_running_loop()
    _, rogue = await loop.create_connection(
        lambda: FrameClient(SessionDeps(LAN, NetStats())), "127.0.0.1", login.lan_port
    )
    rogue.send(pk.SS_KEY_STORE_PROOF.build(b"x" * 32))
    await rogue.wait_closed()
    assert login.lan.listener.stats.errors["not_registered"] == 1
    assert len(login.lan.links) == 1 and not linked.closed


async def test_a_forged_key_store_proof_gets_no_keys_from_the_store(
    logins: Logins, sqlite_url: str, redis_url: str
) -> None:
    login = await logins(sqlite_url, key_store=redis_url)
    link = await fake_link(login.lan_port, "game@127.0.0.1:7000", status_id=5)
    await until(lambda: len(login.lan.links) == 1)
    link.send(pk.SS_KEY_STORE_PROOF.build(bytes(range(200, 232))))  # nobody wrote it
    await until(lambda: login.lan.handoffs.foreign_stores == 1)
    assert login.lan.links[0].keys is None and not link.closed  # its keys go by hand-off


async def test_a_linked_server_that_goes_silent_is_dropped(login: LoginServer) -> None:
    # A serverlink server reports a 200 ms heartbeat, then says nothing more.
    link = await fake_link(login.lan_port, "game@127.0.0.1:1", status_id=5, heartbeat_ms=200)
    await until(lambda: len(login.lan.links) == 1)
    assert pk.packet_type(await link.recv()) == pk.SS_LINK_PING.type  # accepted
    await link.wait_closed(timeout=5)
    assert login.lan.silent_links == 1 and not login.lan.links


async def test_an_original_server_without_heartbeats_is_kept_with_keepalive(
    login: LoginServer,
) -> None:
    link = await fake_link(login.lan_port, "battle")  # no SS_LINK_STATUS: original
    await until(lambda: len(login.lan.links) == 1)
    session = login.lan.links[0].session
    assert session.transport is not None
    sock = session.transport.get_extra_info("socket")
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
    await asyncio.sleep(2.5)  # two ticks of the silence check: still linked
    assert len(login.lan.links) == 1 and not link.lost.is_set()
    link.close("done")


async def test_a_path_cut_without_fin_is_noticed_and_the_link_comes_back(
    db_url: str, tmp_path: Path
) -> None:
    system = await start_system(db_url, tmp_path / "keys.txt", 5, games=0)
    proxy = TcpProxy(system.login.lan_port)
    await proxy.start()
    game = GameServer(
        game_config(
            db_url,
            proxy.port,
            link=LinkConfig(login_servers=(("127.0.0.1", proxy.port),), heartbeat=0.2),
        )
    )
    await game.start()
    try:
        assert game.link is not None
        await asyncio.wait_for(game.link.accepted.wait(), 10)
        proxy.blackhole()  # no FIN, no RST: both ends just stop hearing each other
        await until(lambda: game.link is not None and game.link.silent_drops == 1)
        proxy.heal()
        await until(lambda: game.link is not None and game.link.accepted.is_set())
        await until(lambda: linked_games(system.login) == 1)
        assert proxy.connections == 2
        system.games.append(game)
        await play(system, 1)  # logins go through the new link
    finally:
        await system.stop()
        await proxy.stop()


async def test_a_refused_game_server_backs_off_and_logs_once(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    await init_db(sqlite_url)
    await add_whiteip_db(sqlite_url, "10.9.8.7")  # 127.0.0.1 is not in the table
    login = await start_login(sqlite_url)
    game = GameServer(game_config(sqlite_url, login.lan_port))
    try:
        with caplog.at_level(logging.DEBUG, "serverlink"):
            await game.start()
            await asyncio.sleep(3.0)  # the behaviour under test is a rate over time
        assert game.link is not None
        attempts = game.link.links[0].link.attempts
        # Exponential backoff from 0.2 s: about 5 attempts in 3 s (7 a second before).
        assert 2 <= attempts <= 7, attempts
        refusals = [
            r
            for r in caplog.records
            if "refused?" in r.getMessage() and r.levelno >= logging.WARNING
        ]
        assert len(refusals) == 1
        assert login.lan.rejected_links == attempts - (
            1 if game.link.links[0].link.connected.is_set() else 0
        )
    finally:
        await game.stop()
        await login.stop()


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, TlsConfig]:
    ca = trustme.CA()
    other_ca = trustme.CA()
    base = tmp_path_factory.mktemp("tls")
    configs: dict[str, TlsConfig] = {}
    for name, signer, trusted in (("login", ca, ca), ("game", ca, ca), ("stranger", other_ca, ca)):
        cert = signer.issue_cert("127.0.0.1", "localhost")
        cert_path, key_path, ca_path = (base / f"{name}.{ext}" for ext in ("crt", "key", "ca"))
        cert.private_key_and_cert_chain_pem.write_to_path(str(cert_path))
        cert.private_key_pem.write_to_path(str(key_path))
        trusted.cert_pem.write_to_path(str(ca_path))
        configs[name] = TlsConfig(str(cert_path), str(key_path), str(ca_path))
    return configs


async def test_mutual_tls_links_serverlink_servers_and_refuses_others(
    sqlite_url: str, tmp_path: Path, tls_files: dict[str, TlsConfig]
) -> None:
    await seed_db(sqlite_url, 3, keys_out=tmp_path / "keys.txt")
    login = await start_login(sqlite_url, lan_tls=tls_files["login"])
    game = GameServer(
        game_config(
            sqlite_url,
            login.lan_port,
            link=LinkConfig(login_servers=(("127.0.0.1", login.lan_port),), tls=tls_files["game"]),
        )
    )
    stranger = GameServer(
        game_config(
            sqlite_url,
            login.lan_port,
            link=LinkConfig(
                login_servers=(("127.0.0.1", login.lan_port),),
                server_name="stranger",
                tls=tls_files["stranger"],
            ),
            server_id=50,
        )
    )
    try:
        await game.start()
        await login.wait_links(game=1)
        # Plain TCP to the TLS port: the handshake fails, nothing is linked.
        plain = await fake_link(login.lan_port, "plain@127.0.0.1:1")
        await plain.wait_closed()
        # A certificate from another CA: refused too.
        await stranger.start()
        await until(lambda: login.lan.listener.stats.errors["tls_failed"] >= 2)
        assert linked_games(login) == 1
        keys = read_keys(tmp_path / "keys.txt")
        reply, _ = await login_request(login.port, 1, keys[1])
        assert reply.Status == LoginStatus.OK and reply.GameServerPort == game.port
    finally:
        await stranger.stop()
        await game.stop()
        await login.stop()
