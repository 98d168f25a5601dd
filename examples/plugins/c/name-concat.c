/* `name-concat`: full_name = first_name + separator + last_name (C port of plugins/name-concat).
 * Each part is trimmed; null or blank parts are skipped; when no part is left, full_name is null.
 * first_name and last_name are removed. Config: `separator` (default " "). */
#include <stdlib.h>
#include <string.h>

#include "cdc_transform.h"

static const char *reads[] = {"first_name", "last_name"};
static const cdc_column_def writes[] = {
    {"full_name", CDC_TEXT, 0, 0, "first_name and last_name, trimmed and joined"}};
static const cdc_description description = {"name-concat", "0.1.0", reads, 2, false, writes, 1, reads, 2};

static char *separator;

const cdc_description *cdc_plugin_describe(void) { return &description; }

char *cdc_plugin_configure(const cdc_config *config) {
    const char *sep = cdc_config_get(config, "separator");
    free(separator);
    separator = strdup(sep ? sep : " ");
    return NULL;
}

cdc_outcome cdc_plugin_apply(cdc_event *event) {
    cdc_str parts[2];
    size_t n = 0;
    for (int i = 0; i < 2; i++) {
        cdc_str s;
        if (cdc_event_text(event, reads[i], &s) && (s = cdc_trim(s)).len > 0) parts[n++] = s;
    }
    cdc_event_set_joined(event, "full_name", parts, n, (cdc_str){separator, strlen(separator)});
    return cdc_keep();
}
