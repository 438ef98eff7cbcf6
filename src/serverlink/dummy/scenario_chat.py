"""Chat mode: the virtual clients of the chat server, standalone or through
the login server (``DummyConfig.keys_file``).

Each client is a fair one (``chat_client.ChatClient``: moves, speaks, checks
all it receives) or, for the ``attack`` share, an attacker
(``chat_attack.AttackClient``: one hostile packet per connection, the server's
answer counted). Through the login server every client keeps one account of
the key file for the whole run (chat claims no account, so nothing has to
settle between its logins) and logs in to the chat server with the ID,
nickname and address of the login reply and its account's key; standalone it
is ID_n / NICK_n with a random key.
"""

from __future__ import annotations

import asyncio
import random
from typing import TYPE_CHECKING

from serverlink.dummy.chat_attack import AttackClient, attackers
from serverlink.dummy.chat_check import SegmentCache
from serverlink.dummy.chat_client import ChatClient
from serverlink.dummy.config import DummyConfig
from serverlink.dummy.keys import Account, check_key_count, keys_of, load_keys
from serverlink.dummy.scenario_echo import CLEAN_ENDS, random_session_key
from serverlink.dummy.scenario_login import ServerAddresses, ask_login_server
from serverlink.protocol.packets import encode_wstr
from serverlink.servers.sectors import GRID_SIZE

if TYPE_CHECKING:
    from serverlink.dummy.worker import VirtualClient, Worker


class ChatScenario:
    """One worker's chat clients: who attacks, their accounts, what they share."""

    def __init__(self, worker: Worker) -> None:
        cfg = worker.config
        self.worker = worker
        self.message_interval = cfg.message_interval
        self.move_interval = 0.0 if cfg.sector is not None else cfg.move_interval
        self.pinned = cfg.sector
        #: ID and Nickname fields of this process's clients, by AccountNo.
        self.identities: dict[int, bytes] = {}
        self.cache = SegmentCache(self.identities)
        self.attackers = attackers([c.account_no for c in worker.clients], cfg.attack)
        self.attack_client = AttackClient
        self.attempts: dict[int, int] = {}
        #: Through the login server: each client keeps one account of the key file.
        self.accounts: dict[int, Account] = {}
        if cfg.through_login_server:
            assert cfg.keys_file is not None
            keys = keys_of(worker.index, worker.processes, load_keys(cfg.keys_file))
            self.accounts = {
                c.account_no: Account(no, key, cfg.version)
                for c, (no, key) in zip(worker.clients, keys, strict=False)
            }
        self.addresses = ServerAddresses()

    @staticmethod
    def preflight(config: DummyConfig) -> None:
        """Through the login server: the key file is usable and has enough accounts."""
        if config.keys_file is not None:
            check_key_count(config, len(load_keys(config.keys_file)))

    def pick_sector(self) -> tuple[int, int]:
        if self.pinned is not None:
            return self.pinned
        return random.randrange(GRID_SIZE), random.randrange(GRID_SIZE)

    async def run_once(self, client: VirtualClient) -> bool:
        worker = self.worker
        attacking = client.account_no in self.attackers
        if attacking:
            # One attack per connection, paced like a fair client's messages.
            await asyncio.sleep(self.message_interval * random.uniform(0.5, 1.5))
        account = self.accounts.get(client.account_no)
        if account is None:
            account_no = client.account_no
            key = random_session_key()
            identity = encode_wstr(f"ID_{account_no}", 20) + encode_wstr(f"NICK_{account_no}", 20)
            address = worker.chat_address
        else:
            login, failed = await ask_login_server(worker, client, account)
            if login is None:
                return failed
            account_no, key = account.no, account.key
            identity = login.user_id + login.nickname  # as the login server sent them
            chat_server = self.addresses.get(login.chat_ip, login.chat_port)
            if chat_server is None:
                worker.meter.error("packet_error", "packet:login_server_no_chat_address")
                return True
            address = chat_server
        if attacking:
            attempt = self.attempts.get(client.account_no, 0)
            self.attempts[client.account_no] = attempt + 1
            chat: ChatClient | None = await worker.connect(
                address,
                lambda deps: self.attack_client(deps, self, account_no, identity, attempt),
                "chat",
            )
        else:
            chat = await worker.connect(
                address, lambda deps: ChatClient(deps, self, account_no, identity), "chat"
            )
        if chat is None:
            return True
        client.link = chat
        try:
            chat.start(key)
            reason = await chat.done
        finally:
            client.link = None
        # An attacker's connection ends by its attack: not a failure.
        return reason not in CLEAN_ENDS and not attacking
