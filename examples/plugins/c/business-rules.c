/* `business-rules`: filters and validates customer events (C port of plugins/business-rules).
 * - DELETE events are dropped (config `drop_deletes`, default true).
 * - Events without an email (null or blank) are rejected: `missing email` (config `require_email`).
 * - Events whose lifetime_value is below `min_lifetime_value` (a decimal, default 0) are rejected,
 *   e.g. `lifetime_value -5.00 is negative`. A null lifetime_value passes. */
#include <stdlib.h>

#include "cdc_transform.h"

static const char *reads[] = {"email", "lifetime_value"};
static const cdc_description description = {"business-rules", "0.1.0", reads, 2, false, NULL, 0, NULL, 0};

static bool drop_deletes = true, require_email = true;
static cdc_decimal min_lifetime_value = {0, 1, 0};

const cdc_description *cdc_plugin_describe(void) { return &description; }

char *cdc_plugin_configure(const cdc_config *config) {
    char *err = cdc_config_flag(config, "drop_deletes", true, &drop_deletes);
    if (!err) err = cdc_config_flag(config, "require_email", true, &require_email);
    if (!err) err = cdc_config_decimal(config, "min_lifetime_value", (cdc_decimal){0, 1, 0}, &min_lifetime_value);
    return err;
}

cdc_outcome cdc_plugin_apply(cdc_event *event) {
    if (cdc_event_op(event) == CDC_OP_DELETE) {
        /* A kept delete has no after image to validate. */
        return drop_deletes ? cdc_drop() : cdc_keep();
    }
    cdc_str email;
    if (require_email && (!cdc_event_text(event, "email", &email) || cdc_trim(email).len == 0))
        return cdc_reject("missing email");
    cdc_value ltv = cdc_event_get(event, "lifetime_value");
    bool below;
    switch (ltv.type) {
    case CDC_NULL: below = false; break;
    case CDC_FLOAT64: below = ltv.v.float64 < cdc_decimal_to_f64(min_lifetime_value); break;
    case CDC_TEXT: {
        cdc_decimal d;
        if (!cdc_decimal_parse(ltv.v.str.ptr, ltv.v.str.len, &d))
            return cdc_reject("lifetime_value `%.*s` is not a number", (int)ltv.v.str.len, ltv.v.str.ptr);
        below = cdc_decimal_cmp(d, min_lifetime_value) < 0;
        break;
    }
    case CDC_INT32:
    case CDC_INT64:
    case CDC_DECIMAL: {
        cdc_decimal d = ltv.v.decimal;
        if (ltv.type != CDC_DECIMAL) d = (cdc_decimal){ltv.type == CDC_INT32 ? ltv.v.int32 : ltv.v.int64, 38, 0};
        below = cdc_decimal_cmp(d, min_lifetime_value) < 0;
        break;
    }
    default: return cdc_reject("lifetime_value has unsupported type %s", cdc_type_name(ltv.type));
    }
    if (!below) return cdc_keep();
    char *value = cdc_format_value(ltv);
    cdc_outcome o;
    if (min_lifetime_value.unscaled == 0) {
        o = cdc_reject("lifetime_value %s is negative", value);
    } else {
        char min[48];
        o = cdc_reject("lifetime_value %s is below %s", value, cdc_decimal_format(min_lifetime_value, min));
    }
    free(value);
    return o;
}
