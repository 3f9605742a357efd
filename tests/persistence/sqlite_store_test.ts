import { SqliteStore } from "../../src/persistence/sqlite_store.ts";
import { storeContract } from "./store_contract.ts";

storeContract("sqlite", async () => {
  const dir = await Deno.makeTempDir({ prefix: "gleitzeit-sqlite-" });
  const path = `${dir}/sub/dir/gleitzeit.db`;
  const opened: SqliteStore[] = [];
  const open = () => {
    const s = SqliteStore.open(path);
    opened.push(s);
    return s;
  };
  return {
    store: open(),
    connect: () => Promise.resolve(open()),
    cleanup: async () => {
      for (const s of opened) await s.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
});
