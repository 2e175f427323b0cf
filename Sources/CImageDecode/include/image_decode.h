#ifndef INCEPTION_IMAGE_DECODE_H
#define INCEPTION_IMAGE_DECODE_H
#include <stddef.h>

/// A decoded image: `width × height` RGB pixels, 8 bits per channel, rows top to bottom, allocated with malloc.
typedef struct {
    int width;
    int height;
    unsigned char *pixels;
} inception_rgb_image;

enum {
    INCEPTION_DECODE_OK = 0,
    INCEPTION_DECODE_CORRUPT = 1,     /// the message says why
    INCEPTION_DECODE_TOO_LARGE = 2,   /// width × height exceeds max_pixels; nothing was allocated
    INCEPTION_DECODE_NO_MEMORY = 3,
    INCEPTION_DECODE_TOO_SLOW = 4,    /// the deadline passed before the image was decoded
};

/// Now on the monotonic clock, in nanoseconds: the unit of the decoders' `deadline_ns` (0: no deadline).
long long inception_monotonic_ns(void);

/// Decode a JPEG (baseline or progressive; greyscale, YCbCr or CMYK) to RGB as Pillow's `convert("RGB")` does.
/// `message` receives a description of the failure (at most `message_size` bytes).
/// Past `deadline_ns` (checked at every row of every scan) decoding stops with INCEPTION_DECODE_TOO_SLOW.
int inception_decode_jpeg(const unsigned char *data, size_t size, long long max_pixels, long long deadline_ns,
                          inception_rgb_image *out, char *message, size_t message_size);

/// Decode a PNG (grey, grey+alpha, RGB, RGBA, palette; 1–16 bits; interlaced or not) to RGB as Pillow's
/// `convert("RGB")` does: alpha is dropped, not composited; 16-bit samples keep their high byte.
/// Past `deadline_ns` (checked at every row of every interlace pass) decoding stops with INCEPTION_DECODE_TOO_SLOW.
int inception_decode_png(const unsigned char *data, size_t size, long long max_pixels, long long deadline_ns,
                         inception_rgb_image *out, char *message, size_t message_size);

/// Encode `width × height` RGB pixels (rows top to bottom) as a PNG (8-bit RGB, no interlace). On success `*out`
/// holds `*out_size` bytes allocated with malloc; on failure `message` says why.
int inception_encode_png(const unsigned char *pixels, int width, int height, unsigned char **out, size_t *out_size,
                         char *message, size_t message_size);

#endif
