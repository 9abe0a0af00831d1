// The store contract against the in-memory store the simulated broker runs on.
import { MemoryStore } from "../../src/storage/memory-store";
import { storeContract } from "../store-contract";

storeContract((_key, fn) => fn(new MemoryStore()));
