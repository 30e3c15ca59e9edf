/*
 * Fuzz target for the configuration loader: any bytes go through
 * config_load_string (YAML parsing, schema checks, path resolution,
 * fingerprints) and whatever was built is freed, so leaks show too.
 */
#include "shared/config.h"

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct config *config = NULL;
    const char *error = NULL;

    if (config_load_string("fuzz.yml", (const char *)data, size, &config, &error) == 0)
        config_free(&config);
    return 0;
}
