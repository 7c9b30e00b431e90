// A matrix-js-sdk client (Rust crypto) that a Rust test drives line by line.
//
// Usage: node chat.mjs HOMESERVER   (Node 22: tests/clients/setup prints which binary)
//
// Each stdin line is a JSON command {"cmd": ..., ...}; each gets exactly one stdout line, a JSON
// reply {"ok": true, ...} or {"ok": false, "error": ...}. Once registered, the client runs its
// own sync loop (startClient), as Element does, and remembers each message it decrypted. Waits
// give up after the command's "timeout" seconds, and the whole process after MAX_LIFETIME_MS, so
// a stuck server fails the test instead of hanging it. Nothing secret is written anywhere: the
// SDK logs warnings and errors only, to stderr; stdout carries the replies alone.

import { createInterface } from "node:readline";

const MAX_LIFETIME_MS = 300_000;
const DEFAULT_WAIT = 30;

// The SDK and its WebAssembly crypto log to the console, at every level, even while modules
// load: keep stdout for the replies, send warnings and errors to stderr, and the rest too
// only when MEDRIX_CLIENT_DEBUG is set.
const verbose = Boolean(process.env.MEDRIX_CLIENT_DEBUG);
for (const method of ["log", "info", "debug", "trace"]) {
  console[method] = verbose ? console.error : () => {};
}
const sdk = await import("matrix-js-sdk");

class Chat {
  constructor(baseUrl) {
    this.baseUrl = baseUrl;
    this.client = null;
    this.messages = []; // {roomId, sender, body} of each decrypted text message
    this.undecryptable = 0;
  }

  // Waits until condition() (which may be async) holds.
  async waitFor(condition, timeout, what) {
    const deadline = Date.now() + timeout * 1000;
    while (!(await condition())) {
      if (Date.now() > deadline) throw new Error(`timed out after ${timeout}s waiting for ${what}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  // Registration as Element does it: InteractiveAuth asks the server for its flows, then
  // completes the registration-token stage within the session the server opened.
  async register({ username, password, token }) {
    const bare = sdk.createClient({ baseUrl: this.baseUrl });
    // A refused stage leaves InteractiveAuth waiting for the user to try again: fail instead.
    let refuse;
    const refused = new Promise((_, reject) => (refuse = reject));
    const auth = new sdk.InteractiveAuth({
      matrixClient: bare,
      doRequest: (authDict) =>
        bare.registerRequest({
          username,
          password,
          initial_device_display_name: "js test device",
          ...(authDict ? { auth: authDict } : {}),
        }),
      stateUpdated: (stage, status) => {
        if (status.errcode) {
          refuse(new Error(`${stage} refused: ${status.errcode} ${status.error}`));
        } else if (stage === sdk.AuthType.RegistrationToken) {
          auth.submitAuthDict({ type: stage, token });
        }
      },
      requestEmailToken: () => Promise.reject(new Error("no e-mail stage expected")),
    });
    const registered = await Promise.race([auth.attemptAuth(), refused]);
    await this.start(registered);
    return { user_id: registered.user_id, device_id: registered.device_id };
  }

  async start({ user_id: userId, access_token: accessToken, device_id: deviceId }) {
    this.client = sdk.createClient({ baseUrl: this.baseUrl, userId, accessToken, deviceId });
    await this.client.initRustCrypto({ useIndexedDB: false });
    this.client.on(sdk.MatrixEventEvent.Decrypted, (event) => {
      if (event.isDecryptionFailure()) {
        this.undecryptable += 1;
      } else if (event.getType() === "m.room.message") {
        const { body } = event.getContent();
        this.messages.push({ roomId: event.getRoomId(), sender: event.getSender(), body });
      }
    });
    const prepared = new Promise((resolve) => {
      const onSync = (state) => {
        if (state === sdk.SyncState.Prepared || state === sdk.SyncState.Syncing) {
          this.client.off(sdk.ClientEvent.Sync, onSync);
          resolve();
        }
      };
      this.client.on(sdk.ClientEvent.Sync, onSync);
    });
    await this.client.startClient({ initialSyncLimit: 20 });
    await withTimeout(prepared, DEFAULT_WAIT, "the first sync");
  }

  membership(roomId, userId = this.client.getUserId()) {
    return this.client.getRoom(roomId)?.getMember(userId)?.membership;
  }

  // Waits until a sync has shown the room joined and its crypto knows it is encrypted.
  async waitEncrypted(roomId) {
    await this.waitFor(
      async () =>
        this.membership(roomId) === "join" &&
        (await this.client.getCrypto().isEncryptionEnabledInRoom(roomId)),
      DEFAULT_WAIT,
      `${roomId} to show as encrypted`,
    );
  }

  async create_room({ invite, name }) {
    const { room_id: roomId } = await this.client.createRoom({
      name,
      invite,
      initial_state: [
        { type: "m.room.encryption", state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } },
      ],
    });
    await this.waitEncrypted(roomId);
    return { room_id: roomId };
  }

  async wait_invite({ room_id: roomId, timeout = DEFAULT_WAIT }) {
    await this.waitFor(() => this.membership(roomId) === "invite", timeout, `the invite to ${roomId}`);
    return {};
  }

  async join({ room_id: roomId }) {
    await this.client.joinRoom(roomId);
    await this.waitEncrypted(roomId);
    return {};
  }

  async wait_joined({ room_id: roomId, user_id: userId, timeout = DEFAULT_WAIT }) {
    await this.waitFor(
      () => this.membership(roomId, userId) === "join",
      timeout,
      `${userId} to join ${roomId}`,
    );
    return {};
  }

  async send({ room_id: roomId, body }) {
    const { event_id: eventId } = await this.client.sendTextMessage(roomId, body);
    return { event_id: eventId };
  }

  async wait_message({ room_id: roomId, sender, body, timeout = DEFAULT_WAIT }) {
    const seen = () =>
      this.messages.some((m) => m.roomId === roomId && m.sender === sender && m.body === body);
    try {
      await this.waitFor(seen, timeout, "the message");
    } catch (err) {
      throw new Error(
        `${err.message}; decrypted ${this.messages.length} other messages, ` +
          `${this.undecryptable} undecryptable`,
      );
    }
    return { decrypted: true };
  }
}

function withTimeout(promise, seconds, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${seconds}s waiting for ${what}`)), seconds * 1000);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function reply(fields) {
  process.stdout.write(JSON.stringify(fields) + "\n");
}

async function main() {
  const [baseUrl] = process.argv.slice(2);
  setTimeout(() => {
    console.error(`chat.mjs: gave up after ${MAX_LIFETIME_MS / 1000}s`);
    process.exit(1);
  }, MAX_LIFETIME_MS).unref();
  const chat = new Chat(baseUrl);
  for await (const line of createInterface({ input: process.stdin })) {
    const { cmd, ...args } = JSON.parse(line);
    try {
      if (typeof chat[cmd] !== "function") throw new Error(`unknown command ${cmd}`);
      reply({ ok: true, ...(await chat[cmd](args)) });
    } catch (err) {
      reply({ ok: false, error: `${err.name}: ${err.message}` });
    }
  }
  chat.client?.stopClient();
  // The crypto's WebAssembly keeps no work worth waiting for once the test has hung up.
  process.exit(0);
}

await main();
