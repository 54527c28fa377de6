/* util/crc32c: CRC-32C (Castagnoli), the checksum of WAL records and snapshots.
 *
 * Table-driven (slicing-by-8), no CPU-specific code. Incremental: pass the
 * previous result as `crc` to continue (start with 0).
 */
#ifndef FL_UTIL_CRC32C_H
#define FL_UTIL_CRC32C_H

#include <stddef.h>
#include <stdint.h>

uint32_t fl_crc32c(uint32_t crc, const void *data, size_t len);

#endif
