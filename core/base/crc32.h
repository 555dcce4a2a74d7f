// CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320), bit-compatible with zlib's crc32():
// checkpoint manifests record it for every file so that corruption is caught before loading.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace cr {

// CRC of `n` bytes, continuing from `crc` (the result of the previous chunk; 0 to start), so
// crc32(b, nb, crc32(a, na)) == crc32(a+b). Uses carry-less multiplication where the CPU has
// it (over 10 GB/s), slicing-by-8 tables otherwise.
uint32_t crc32(const void* data, size_t n, uint32_t crc = 0);

// The table-driven implementation alone; exposed so that tests cover it on CPUs that take the
// fast path.
uint32_t crc32_portable(const void* data, size_t n, uint32_t crc = 0);

// CRC of a whole file, read in large chunks; cr::Error naming the file if it cannot be read.
uint32_t crc32_file(const std::string& path);

// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as TensorBoard's record files use it;
// byte-table driven (their records are small).
uint32_t crc32c(const void* data, size_t n);

}  // namespace cr
