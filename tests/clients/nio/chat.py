"""A matrix-nio client that a Rust test drives line by line.

Usage: chat.py HOMESERVER USER_ID

Each stdin line is a JSON command {"cmd": ..., ...}; each gets exactly one stdout line, a JSON
reply {"ok": true, ...} or {"ok": false, "error": ...}. Once logged in, the client syncs in the
background the way nio's own sync loop does (it uploads, queries and claims keys itself) and
remembers each message it decrypted. Waits give up after the command's "timeout" seconds, and
the whole process after MAX_LIFETIME, so a stuck server fails the test instead of hanging it.
Nothing secret is written anywhere: no tokens, no logs at debug level.
"""

import asyncio
import json
import logging
import sys
import tempfile

from nio import (
    AsyncClient,
    AsyncClientConfig,
    JoinResponse,
    LoginResponse,
    MegolmEvent,
    RegisterResponse,
    RoomCreateResponse,
    RoomMessageText,
    RoomSendResponse,
    UnknownEvent,
)

MAX_LIFETIME = 300
DEFAULT_WAIT = 30
# Small enough that a wait notices a new event soon, large enough to exercise long polling.
SYNC_TIMEOUT_MS = 2000
# nio puts a filter given as a dict inline into ?filter=, as its users commonly do.
SYNC_FILTER = {"room": {"timeline": {"limit": 20}}}


class Failure(Exception):
    """A command that did not do what it was asked; its message goes back to the test."""


class Chat:
    def __init__(self, homeserver: str, user_id: str, store: str):
        config = AsyncClientConfig(encryption_enabled=True, store_sync_tokens=True)
        self.client = AsyncClient(homeserver, user_id, store_path=store, config=config)
        self.client.add_event_callback(self.on_message, RoomMessageText)
        self.client.add_event_callback(self.on_undecryptable, MegolmEvent)
        self.client.add_event_callback(self.on_other_event, UnknownEvent)
        self.messages = []  # (room_id, sender, body) of each decrypted text message
        self.entries = []  # (room_id, sender, content) of each decrypted org.medrix.entry
        self.undecryptable = 0
        self.changed = asyncio.Event()
        self.sync_task = None
        self.sync_error = None
        self.client.add_response_callback(self.on_sync_response)

    async def on_message(self, room, event):
        if event.decrypted:
            self.messages.append((room.room_id, event.sender, event.body))

    async def on_other_event(self, room, event):
        # A Medrix record entry: nio decrypts it like any event and, not knowing the type,
        # hands it over as an UnknownEvent with its decrypted source.
        if event.decrypted and event.type == "org.medrix.entry":
            self.entries.append((room.room_id, event.sender, event.source.get("content", {})))

    async def on_undecryptable(self, room, event):
        self.undecryptable += 1

    async def on_sync_response(self, response):
        self.changed.set()

    async def wait_for(self, condition, timeout, what):
        """Waits until condition() is true, re-checking after every sync."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not condition():
            if self.sync_error is not None:
                raise Failure(f"the sync loop stopped: {self.sync_error}")
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise Failure(f"timed out after {timeout}s waiting for {what}")
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), min(remaining, 1.0))
            except asyncio.TimeoutError:
                pass

    async def sync_forever(self):
        try:
            await self.client.sync_forever(timeout=SYNC_TIMEOUT_MS, sync_filter=SYNC_FILTER)
        except asyncio.CancelledError:
            raise
        except Exception as err:  # reported by the next wait
            self.sync_error = repr(err)
            self.changed.set()

    async def wait_encrypted(self, room_id):
        """Waits until a sync has shown the room and its m.room.encryption state."""

        def encrypted():
            room = self.client.rooms.get(room_id)
            return room is not None and room.encrypted

        await self.wait_for(encrypted, DEFAULT_WAIT, f"{room_id} to show as encrypted")

    # Commands: each returns the reply's fields or raises Failure.

    async def register(self, username, password):
        """nio's own register(): it sends m.login.dummy as its only stage."""
        response = await self.client.register(username, password)
        return {
            "registered": isinstance(response, RegisterResponse),
            # The HTTP status: nio's error type only carries an errcode, and a UIA 401 has none.
            "status": response.transport_response.status,
        }

    async def register_with_token(self, username, password, token):
        """nio's registration-token flow: open a session, the token stage, the dummy stage."""
        response = await self.client.register_with_token(
            username, password, token, device_name="nio test device"
        )
        if not isinstance(response, RegisterResponse):
            raise Failure(f"register_with_token: {response}")
        # No sync yet: the test logs in next, which is the device that converses.
        return {"user_id": response.user_id, "device_id": response.device_id}

    async def login(self, password):
        response = await self.client.login(password, device_name="nio test device")
        if not isinstance(response, LoginResponse):
            raise Failure(f"login: {response}")
        self.sync_task = asyncio.create_task(self.sync_forever())
        return {"user_id": response.user_id, "device_id": response.device_id}

    async def create_room(self, invite, name):
        encryption = {
            "type": "m.room.encryption",
            "state_key": "",
            "content": {"algorithm": "m.megolm.v1.aes-sha2"},
        }
        response = await self.client.room_create(
            name=name, invite=invite, initial_state=[encryption]
        )
        if not isinstance(response, RoomCreateResponse):
            raise Failure(f"createRoom: {response}")
        room_id = response.room_id
        await self.wait_encrypted(room_id)
        return {"room_id": room_id}

    async def wait_invite(self, room_id, timeout=DEFAULT_WAIT):
        await self.wait_for(
            lambda: room_id in self.client.invited_rooms, timeout, f"the invite to {room_id}"
        )
        return {}

    async def join(self, room_id, encrypted=True):
        """Joins; for an encrypted room (the default), also waits until a sync shows it so."""
        response = await self.client.join(room_id)
        if not isinstance(response, JoinResponse):
            raise Failure(f"join: {response}")
        if encrypted:
            await self.wait_encrypted(room_id)
        return {}

    async def wait_joined(self, room_id, user_id, timeout=DEFAULT_WAIT):
        def joined():
            room = self.client.rooms.get(room_id)
            return room is not None and user_id in room.users and user_id not in room.invited_users

        await self.wait_for(joined, timeout, f"{user_id} to join {room_id}")
        return {}

    async def send(self, room_id, body):
        response = await self.client.room_send(
            room_id,
            "m.room.message",
            {"msgtype": "m.text", "body": body},
            ignore_unverified_devices=True,
        )
        if not isinstance(response, RoomSendResponse):
            raise Failure(f"send: {response}")
        return {"event_id": response.event_id}

    async def wait_message(self, room_id, sender, body, timeout=DEFAULT_WAIT):
        try:
            await self.wait_for(
                lambda: (room_id, sender, body) in self.messages, timeout, "the message"
            )
        except Failure as err:
            raise Failure(
                f"{err}; decrypted {len(self.messages)} other messages, "
                f"{self.undecryptable} undecryptable"
            ) from None
        return {"decrypted": True}

    async def wait_entry(self, room_id, resource_id, timeout=DEFAULT_WAIT):
        """Waits until an org.medrix.entry holding the FHIR resource `resource_id` was
        decrypted in the room; answers the resource."""

        def found():
            for room, _, content in self.entries:
                resource = content.get("resource", {})
                if room == room_id and resource.get("id") == resource_id:
                    return resource
            return None

        try:
            await self.wait_for(lambda: found() is not None, timeout, "the entry")
        except Failure as err:
            raise Failure(
                f"{err}; decrypted {len(self.entries)} other entries, "
                f"{self.undecryptable} undecryptable"
            ) from None
        return {"resource": found()}

    async def close(self):
        if self.sync_task is not None:
            self.sync_task.cancel()
            try:
                await self.sync_task
            except asyncio.CancelledError:
                pass
        await self.client.close()


async def read_lines():
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        yield line


def reply(fields):
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


async def serve(homeserver, user_id):
    with tempfile.TemporaryDirectory(prefix="medrix-nio-") as store:
        chat = Chat(homeserver, user_id, store)
        try:
            async for line in read_lines():
                command = json.loads(line)
                name = command.pop("cmd")
                try:
                    fields = await getattr(chat, name)(**command)
                    reply({"ok": True, **fields})
                except Exception as err:  # the test reports it; the client stays usable
                    reply({"ok": False, "error": f"{type(err).__name__}: {err}"})
        finally:
            await chat.close()


async def main():
    homeserver, user_id = sys.argv[1:3]
    try:
        await asyncio.wait_for(serve(homeserver, user_id), MAX_LIFETIME)
    except asyncio.TimeoutError:
        print(f"chat.py: gave up after {MAX_LIFETIME}s", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    asyncio.run(main())
