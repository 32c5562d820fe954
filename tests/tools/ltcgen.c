/* Writes linear timecode as audio with Debian's libltc, the reference the tests check Parvis's
 * LTC decoder against: `ltcgen FPS HH MM SS FF FRAMES RATE OUT.raw` writes FRAMES frames of
 * LTC from HH:MM:SS:FF at FPS (24, 25, 29.97 drop-frame or 30) as unsigned 8-bit mono samples
 * at RATE Hz. Built by tests/show.rs with `cc ltcgen.c -lltc`. */
#include <ltc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    if (argc != 9) {
        fprintf(stderr, "usage: ltcgen FPS HH MM SS FF FRAMES RATE OUT.raw\n");
        return 2;
    }
    double fps = atof(argv[1]);
    int frames = atoi(argv[6]);
    double rate = atof(argv[7]);
    enum LTC_TV_STANDARD standard = fps == 25.0 ? LTC_TV_625_50 : fps == 24.0 ? LTC_TV_FILM_24 : LTC_TV_525_60;
    LTCEncoder *encoder = ltc_encoder_create(rate, fps, standard, 0);
    if (!encoder) {
        fprintf(stderr, "ltc_encoder_create failed\n");
        return 1;
    }
    SMPTETimecode tc;
    memset(&tc, 0, sizeof tc);
    strcpy(tc.timezone, "+0000");
    tc.years = 26;
    tc.months = 12;
    tc.days = 7;
    tc.hours = atoi(argv[2]);
    tc.mins = atoi(argv[3]);
    tc.secs = atoi(argv[4]);
    tc.frame = atoi(argv[5]);
    ltc_encoder_set_timecode(encoder, &tc);
    FILE *out = fopen(argv[8], "wb");
    if (!out) {
        perror(argv[8]);
        return 1;
    }
    for (int i = 0; i < frames; i++) {
        ltc_encoder_encode_frame(encoder);
        ltcsnd_sample_t *buf;
        int n = ltc_encoder_get_bufferptr(encoder, &buf, 1);
        fwrite(buf, 1, n, out);
        ltc_encoder_inc_timecode(encoder);
    }
    fclose(out);
    ltc_encoder_free(encoder);
    return 0;
}
