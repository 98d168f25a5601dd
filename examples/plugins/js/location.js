// `location`: location = "city, state, country" (JavaScript port of plugins/location).
// Each part is trimmed; null or blank parts are skipped; when no part is left, location is null.
// city, state and country are removed. Config: `separator` (default ", ").
import { ColumnDef, Keep } from "cdc-transform";

export default class Location {
  constructor(separator = ", ") {
    this.separator = separator;
  }
  static describe() {
    return {
      name: "location",
      version: "0.1.0",
      reads: ["city", "state", "country"],
      writes: [ColumnDef.text("location", "city, state and country, trimmed and joined")],
      removes: ["city", "state", "country"],
    };
  }
  static configure(config) {
    return new Location(config.get("separator", ", "));
  }
  apply(event) {
    const parts = [event.text("city"), event.text("state"), event.text("country")]
      .filter((p) => p !== null)
      .map((p) => p.trim())
      .filter((p) => p !== "");
    event.set("location", parts.length ? parts.join(this.separator) : null);
    return Keep;
  }
}
