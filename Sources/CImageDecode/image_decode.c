// libjpeg and libpng report errors by longjmp, which Swift cannot catch; this file keeps every longjmp inside C
// and turns it into a return code and a message. Dimensions are checked against a pixel limit before any
// pixel memory is allocated, so a decompression bomb is an error, not an out-of-memory kill.
#include "image_decode.h"
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <jpeglib.h>
#include <jerror.h>
#include <png.h>

static void set_message(char *message, size_t size, const char *text) {
    if (size == 0) return;
    strncpy(message, text, size - 1);
    message[size - 1] = 0;
}

long long inception_monotonic_ns(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (long long)now.tv_sec * 1000000000LL + now.tv_nsec;
}

static int past(long long deadline_ns) { return deadline_ns > 0 && inception_monotonic_ns() > deadline_ns; }

// MARK: JPEG

typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    char message[JMSG_LENGTH_MAX];
} jpeg_error_context;

// libjpeg calls the progress monitor for every row of every pass (a progressive JPEG may hold thousands of scans).
typedef struct {
    struct jpeg_progress_mgr pub;
    long long deadline_ns;
} jpeg_deadline;

static void jpeg_on_progress(j_common_ptr cinfo) {
    jpeg_deadline *d = (jpeg_deadline *)cinfo->progress;
    if (!past(d->deadline_ns)) return;
    jpeg_error_context *e = (jpeg_error_context *)cinfo->err;
    set_message(e->message, sizeof e->message, "decoding took longer than its time limit");
    longjmp(e->jump, 2);
}

static void jpeg_on_error(j_common_ptr cinfo) {
    jpeg_error_context *e = (jpeg_error_context *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, e->message);
    longjmp(e->jump, 1);
}

// Warnings are ignored except a premature end of data, which Pillow reports as a truncated image.
static void jpeg_on_message(j_common_ptr cinfo, int level) {
    if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF) jpeg_on_error(cinfo);
}

// Pillow's CMYK to RGB: r = (255 − k) − c·(255 − k)/255, rounded as its MULDIV255.
static unsigned char cmyk_channel(int c, int k) {
    int nk = 255 - k, tmp = c * nk + 128;
    int v = nk - (((tmp >> 8) + tmp) >> 8);
    return (unsigned char)(v < 0 ? 0 : v > 255 ? 255 : v);
}

int inception_decode_jpeg(const unsigned char *data, size_t size, long long max_pixels, long long deadline_ns,
                          inception_rgb_image *out, char *message, size_t message_size) {
    struct jpeg_decompress_struct cinfo;
    jpeg_error_context err;
    jpeg_deadline deadline = {{jpeg_on_progress, 0, 0, 0, 0}, deadline_ns};
    int jumped;
    unsigned char *volatile pixels = NULL;
    unsigned char *volatile row = NULL;
    memset(out, 0, sizeof *out);
    cinfo.err = jpeg_std_error(&err.pub);
    err.pub.error_exit = jpeg_on_error;
    err.pub.emit_message = jpeg_on_message;
    if ((jumped = setjmp(err.jump))) {
        set_message(message, message_size, err.message);
        free(pixels);
        free(row);
        jpeg_destroy_decompress(&cinfo);
        return jumped == 2 ? INCEPTION_DECODE_TOO_SLOW : INCEPTION_DECODE_CORRUPT;
    }
    jpeg_create_decompress(&cinfo);
    cinfo.progress = &deadline.pub;
    jpeg_mem_src(&cinfo, data, (unsigned long)size);
    jpeg_read_header(&cinfo, TRUE);
    if ((long long)cinfo.image_width * (long long)cinfo.image_height > max_pixels) {
        out->width = (int)cinfo.image_width;
        out->height = (int)cinfo.image_height;
        jpeg_destroy_decompress(&cinfo);
        return INCEPTION_DECODE_TOO_LARGE;
    }
    int cmyk = cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK;
    // Pillow decodes with libjpeg's defaults: the accurate integer IDCT and fancy upsampling.
    cinfo.out_color_space = cmyk ? JCS_CMYK : JCS_RGB;
    jpeg_start_decompress(&cinfo);
    size_t width = cinfo.output_width, height = cinfo.output_height;
    pixels = malloc(width * height * 3);
    row = malloc(width * (size_t)cinfo.output_components);
    if (!pixels || !row) {
        free(pixels);
        free(row);
        jpeg_destroy_decompress(&cinfo);
        return INCEPTION_DECODE_NO_MEMORY;
    }
    while (cinfo.output_scanline < cinfo.output_height) {
        size_t y = cinfo.output_scanline;
        JSAMPROW rows[1] = {cmyk ? row : pixels + y * width * 3};
        jpeg_read_scanlines(&cinfo, rows, 1);
        if (cmyk) {
            // Adobe's CMYK JPEGs store inverted values; Pillow reads them as "CMYK;I".
            int invert = cinfo.saw_Adobe_marker;
            for (size_t x = 0; x < width; x++) {
                int c = row[4 * x], m = row[4 * x + 1], yy = row[4 * x + 2], k = row[4 * x + 3];
                if (invert) { c = 255 - c; m = 255 - m; yy = 255 - yy; k = 255 - k; }
                unsigned char *p = pixels + (y * width + x) * 3;
                p[0] = cmyk_channel(c, k);
                p[1] = cmyk_channel(m, k);
                p[2] = cmyk_channel(yy, k);
            }
        }
    }
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    free(row);
    out->width = (int)width;
    out->height = (int)height;
    out->pixels = pixels;
    return INCEPTION_DECODE_OK;
}

// MARK: PNG

typedef struct {
    const unsigned char *data;
    size_t size, offset;
    long long deadline_ns;
    int too_slow;
    char message[256];
} png_context;

// Called after every row of every interlace pass.
static void png_on_row(png_structp png, png_uint_32 row, int pass) {
    (void)row; (void)pass;
    png_context *ctx = (png_context *)png_get_io_ptr(png);
    if (!past(ctx->deadline_ns)) return;
    ctx->too_slow = 1;
    png_error(png, "decoding took longer than its time limit");
}

static void png_on_error(png_structp png, png_const_charp text) {
    png_context *ctx = (png_context *)png_get_error_ptr(png);
    set_message(ctx->message, sizeof ctx->message, text);
    png_longjmp(png, 1);
}

static void png_on_warning(png_structp png, png_const_charp text) { (void)png; (void)text; }

static void png_read_memory(png_structp png, png_bytep out, png_size_t count) {
    png_context *ctx = (png_context *)png_get_io_ptr(png);
    if (count > ctx->size - ctx->offset) png_error(png, "unexpected end of file (truncated image)");
    memcpy(out, ctx->data + ctx->offset, count);
    ctx->offset += count;
}

int inception_decode_png(const unsigned char *data, size_t size, long long max_pixels, long long deadline_ns,
                         inception_rgb_image *out, char *message, size_t message_size) {
    png_context ctx = {data, size, 0, deadline_ns, 0, {0}};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &ctx, png_on_error, png_on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    unsigned char *volatile pixels = NULL;
    png_bytep *volatile rows = NULL;
    memset(out, 0, sizeof *out);
    if (!png || !info) {
        png_destroy_read_struct(png ? &png : NULL, NULL, NULL);
        return INCEPTION_DECODE_NO_MEMORY;
    }
    if (setjmp(png_jmpbuf(png))) {
        set_message(message, message_size, ctx.message);
        free(pixels);
        free(rows);
        png_destroy_read_struct(&png, &info, NULL);
        return ctx.too_slow ? INCEPTION_DECODE_TOO_SLOW : INCEPTION_DECODE_CORRUPT;
    }
    png_set_read_fn(png, &ctx, png_read_memory);
    png_set_read_status_fn(png, png_on_row);
    png_set_user_limits(png, 0x7fffffff, 0x7fffffff);
    png_read_info(png, info);
    png_uint_32 width = png_get_image_width(png, info), height = png_get_image_height(png, info);
    if ((long long)width * (long long)height > max_pixels) {
        out->width = (int)width;
        out->height = (int)height;
        png_destroy_read_struct(&png, &info, NULL);
        return INCEPTION_DECODE_TOO_LARGE;
    }
    int color = png_get_color_type(png, info), depth = png_get_bit_depth(png, info);
    if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);   // tRNS is not expanded: alpha is dropped
    if (color == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (depth == 16) png_set_strip_16(png);                             // the high byte, as Pillow's "RGB;16B"
    if (color & PNG_COLOR_MASK_ALPHA) png_set_strip_alpha(png);         // dropped, not composited, as Pillow
    if (color == PNG_COLOR_TYPE_GRAY || color == PNG_COLOR_TYPE_GRAY_ALPHA) png_set_gray_to_rgb(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    if (png_get_rowbytes(png, info) != (size_t)width * 3) png_error(png, "unexpected row layout after conversion");
    pixels = malloc((size_t)width * height * 3);
    rows = malloc(sizeof(png_bytep) * height);
    if (!pixels || !rows) {
        free(pixels);
        free(rows);
        png_destroy_read_struct(&png, &info, NULL);
        return INCEPTION_DECODE_NO_MEMORY;
    }
    for (png_uint_32 y = 0; y < height; y++) rows[y] = pixels + (size_t)y * width * 3;
    png_read_image(png, rows);
    png_read_end(png, NULL);
    png_destroy_read_struct(&png, &info, NULL);
    free(rows);
    out->width = (int)width;
    out->height = (int)height;
    out->pixels = pixels;
    return INCEPTION_DECODE_OK;
}

typedef struct {
    unsigned char *data;
    size_t size, capacity;
    char message[256];
} png_sink;

static void png_write_memory(png_structp png, png_bytep bytes, png_size_t count) {
    png_sink *sink = (png_sink *)png_get_io_ptr(png);
    if (count > sink->capacity - sink->size) {
        size_t capacity = sink->capacity ? sink->capacity : 65536;
        while (count > capacity - sink->size) capacity *= 2;
        unsigned char *grown = realloc(sink->data, capacity);
        if (!grown) png_error(png, "out of memory");
        sink->data = grown;
        sink->capacity = capacity;
    }
    memcpy(sink->data + sink->size, bytes, count);
    sink->size += count;
}

static void png_flush_memory(png_structp png) { (void)png; }

static void png_on_write_error(png_structp png, png_const_charp text) {
    png_sink *sink = (png_sink *)png_get_error_ptr(png);
    set_message(sink->message, sizeof sink->message, text);
    png_longjmp(png, 1);
}

int inception_encode_png(const unsigned char *pixels, int width, int height, unsigned char **out, size_t *out_size,
                         char *message, size_t message_size) {
    png_sink sink = {NULL, 0, 0, {0}};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &sink, png_on_write_error, png_on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    *out = NULL;
    *out_size = 0;
    if (!png || !info) {
        png_destroy_write_struct(png ? &png : NULL, NULL);
        return INCEPTION_DECODE_NO_MEMORY;
    }
    if (setjmp(png_jmpbuf(png))) {
        set_message(message, message_size, sink.message);
        free(sink.data);
        png_destroy_write_struct(&png, &info);
        return INCEPTION_DECODE_CORRUPT;
    }
    png_set_write_fn(png, &sink, png_write_memory, png_flush_memory);
    png_set_IHDR(png, info, (png_uint_32)width, (png_uint_32)height, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < height; y++) png_write_row(png, (png_const_bytep)(pixels + (size_t)y * width * 3));
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    *out = sink.data;
    *out_size = sink.size;
    return INCEPTION_DECODE_OK;
}
