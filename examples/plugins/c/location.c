/* `location`: location = "city, state, country" (C port of plugins/location).
 * Each part is trimmed; null or blank parts are skipped; when no part is left, location is null.
 * city, state and country are removed. Config: `separator` (default ", "). */
#include <stdlib.h>
#include <string.h>

#include "cdc_transform.h"

static const char *reads[] = {"city", "state", "country"};
static const cdc_column_def writes[] = {
    {"location", CDC_TEXT, 0, 0, "city, state and country, trimmed and joined"}};
static const cdc_description description = {"location", "0.1.0", reads, 3, false, writes, 1, reads, 3};

static char *separator;

const cdc_description *cdc_plugin_describe(void) { return &description; }

char *cdc_plugin_configure(const cdc_config *config) {
    const char *sep = cdc_config_get(config, "separator");
    free(separator);
    separator = strdup(sep ? sep : ", ");
    return NULL;
}

cdc_outcome cdc_plugin_apply(cdc_event *event) {
    cdc_str parts[3];
    size_t n = 0;
    for (int i = 0; i < 3; i++) {
        cdc_str s;
        if (cdc_event_text(event, reads[i], &s) && (s = cdc_trim(s)).len > 0) parts[n++] = s;
    }
    cdc_event_set_joined(event, "location", parts, n, (cdc_str){separator, strlen(separator)});
    return cdc_keep();
}
