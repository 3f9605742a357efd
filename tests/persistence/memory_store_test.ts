import { MemoryStore } from "../../src/persistence/memory_store.ts";
import { storeContract } from "./store_contract.ts";

storeContract("memory", () => {
  const store = new MemoryStore();
  return Promise.resolve({ store, cleanup: () => store.close() });
});
