// The store contract against the SQLite store, inside workerd, each case on a fresh object.
import { env } from "cloudflare:workers";
import { runInDurableObject } from "cloudflare:test";
import { SqliteStore } from "../../src/storage/sqlite-store";
import { storeContract } from "../store-contract";

storeContract((key, fn) => {
  const stub = env.BROKER.get(env.BROKER.idFromName(`${key}-${crypto.randomUUID()}`));
  return runInDurableObject(stub, (_instance, state) => fn(new SqliteStore(state.storage.sql)));
});
