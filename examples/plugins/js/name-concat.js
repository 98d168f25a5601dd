// `name-concat`: full_name = first_name + separator + last_name (JavaScript port of plugins/name-concat).
// Each part is trimmed; null or blank parts are skipped; when no part is left, full_name is null.
// first_name and last_name are removed. Config: `separator` (default " ").
import { ColumnDef, Keep } from "cdc-transform";

export default class NameConcat {
  constructor(separator = " ") {
    this.separator = separator;
  }
  static describe() {
    return {
      name: "name-concat",
      version: "0.1.0",
      reads: ["first_name", "last_name"],
      writes: [ColumnDef.text("full_name", "first_name and last_name, trimmed and joined")],
      removes: ["first_name", "last_name"],
    };
  }
  static configure(config) {
    return new NameConcat(config.get("separator", " "));
  }
  apply(event) {
    const parts = [event.text("first_name"), event.text("last_name")]
      .filter((p) => p !== null)
      .map((p) => p.trim())
      .filter((p) => p !== "");
    event.set("full_name", parts.length ? parts.join(this.separator) : null);
    return Keep;
  }
}
