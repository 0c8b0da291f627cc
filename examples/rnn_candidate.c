/* A gradient candidate in C for `handgrad check --exec`: reads a handgrad case file (.json),
 * runs the Elman RNN forward and its BPTT, writes the candidate file (.json).
 *
 *   cc -O2 -o rnn_candidate examples/rnn_candidate.c -lm
 *   handgrad check --exec './rnn_candidate {case} {out}' --activation tanh --bias --output all
 *
 * Built with -DCLASSIC_BUG it carries the gradient to h_{t-1} through W instead of W^T: the
 * classic row/column slip of hand-written C, invisible when H = 1 (a 1 x 1 W is its own
 * transpose). handgrad finds it and shrinks it to H = 2.
 *
 * Model (size letters B batch, T steps, D inputs, H hidden, O outputs; arrays row-major):
 *   a_t = U x_t + W h_{t-1} + b,  h_t = act(a_t),  o_t = V h_t + c,  t = 1..T
 * Supported: activation tanh | sigmoid, bias or not, output all | last, loss half_squared |
 * squared, reduction sum | mean, full BPTT. Anything else: exit status 3 with a message.
 * The reader understands the JSON that handgrad writes (nested lists of numbers, the spec as
 * an object); it is not a general JSON parser.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct { double *v; int n, cap, ndim, shape[4]; } Arr;

static void die(const char *what) { fprintf(stderr, "rnn_candidate: %s\n", what); exit(3); }

static const char *ws(const char *p) { while (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t') p++; return p; }

static void push(Arr *a, double x) {
    if (a->n == a->cap) {
        a->cap = a->cap ? 2 * a->cap : 64;
        a->v = realloc(a->v, a->cap * sizeof(double));
        if (!a->v) die("out of memory");
    }
    a->v[a->n++] = x;
}

/* parse a number or a nested list starting at p; record the length of the lists at each depth */
static const char *parse(const char *p, Arr *a, int depth) {
    p = ws(p);
    if (*p != '[') {
        char *end;
        double x = strtod(p, &end);
        if (end == p) die("expected a number");
        push(a, x);
        return end;
    }
    if (depth >= 4) die("array nested too deep");
    if (a->ndim < depth + 1) a->ndim = depth + 1;
    int count = 0;
    p = ws(p + 1);
    if (*p == ']') { a->shape[depth] = 0; return p + 1; }
    for (;;) {
        p = ws(parse(p, a, depth + 1));
        count++;
        if (*p == ',') { p++; continue; }
        if (*p == ']') { p++; break; }
        die("expected , or ]");
    }
    a->shape[depth] = count;
    return p;
}

/* the array stored under "name", or an empty one (n = 0) if the file has none */
static Arr get(const char *text, const char *name) {
    char key[32];
    Arr a = {0};
    snprintf(key, sizeof key, "\"%s\":", name);
    const char *p = strstr(text, key);
    if (p) parse(p + strlen(key), &a, 0);
    return a;
}

static int spec_is(const char *text, const char *field, const char *value) {
    char pat[96];
    snprintf(pat, sizeof pat, "\"%s\": %s", field, value);
    return strstr(text, pat) != NULL;
}

static void put(FILE *f, const char *name, const double *v, int rows, int cols) {
    fprintf(f, ",\n \"%s\": [", name);
    for (int i = 0; i < rows; i++) {
        fprintf(f, cols ? "%s[" : "%s", i ? ", " : "");
        for (int j = 0; j < (cols ? cols : 1); j++)
            fprintf(f, "%s%.17g", j ? ", " : "", v[i * (cols ? cols : 1) + j]);
        if (cols) fprintf(f, "]");
    }
    fprintf(f, "]");
}

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: rnn_candidate CASE.json OUT.json\n"); return 2; }
    FILE *f = fopen(argv[1], "rb");
    if (!f) die("cannot open the case file");
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    rewind(f);
    char *text = malloc(size + 1);
    if (!text || fread(text, 1, size, f) != (size_t)size) die("cannot read the case file");
    text[size] = 0;
    fclose(f);

    if (*ws(text) != '{') die("not a JSON case file (run handgrad with --format json)");
    if (!spec_is(text, "truncation", "null")) die("only full BPTT is implemented");
    if (!spec_is(text, "loss", "\"half_squared\"") && !spec_is(text, "loss", "\"squared\""))
        die("only the squared losses are implemented");
    int sigmoid = spec_is(text, "activation", "\"sigmoid\"");
    int all = spec_is(text, "output", "\"all\"");
    int mean = spec_is(text, "reduction", "\"mean\"");
    double half = spec_is(text, "loss", "\"half_squared\"") ? 0.5 : 1.0;

    Arr U = get(text, "U"), W = get(text, "W"), V = get(text, "V"), b = get(text, "b"),
        c = get(text, "c"), xs = get(text, "xs"), ys = get(text, "ys"), h0 = get(text, "h0");
    int H = U.shape[0], D = U.shape[1], O = V.shape[0];
    int B = xs.shape[0], T = xs.shape[1];
    int S = all ? T : 1;                                   /* output steps */
    int bias = b.n > 0;
    double count = mean ? (double)B * S * O : 1.0;

    double *hs = calloc((size_t)B * (T + 1) * H, sizeof(double));   /* h_0..h_T per sample */
    double *gU = calloc(H * D, sizeof(double)), *gW = calloc(H * H, sizeof(double)),
           *gV = calloc(O * H, sizeof(double)), *gb = calloc(H, sizeof(double)),
           *gc = calloc(O, sizeof(double)), *gh0 = calloc(B * H, sizeof(double)),
           *dh = calloc(H, sizeof(double)), *da = calloc(H, sizeof(double)),
           *carry = calloc(H, sizeof(double)), *dout = calloc(O, sizeof(double));
    double loss = 0.0;

    for (int s = 0; s < B; s++) {
        double *h = hs + (size_t)s * (T + 1) * H;           /* h[t * H + i] = h_t[i] */
        for (int i = 0; i < H; i++) h[i] = h0.n ? h0.v[s * H + i] : 0.0;
        for (int t = 1; t <= T; t++)                          /* forward */
            for (int i = 0; i < H; i++) {
                double a = bias ? b.v[i] : 0.0;
                for (int d = 0; d < D; d++) a += U.v[i * D + d] * xs.v[((size_t)s * T + t - 1) * D + d];
                for (int j = 0; j < H; j++) a += W.v[i * H + j] * h[(t - 1) * H + j];
                h[t * H + i] = sigmoid ? 1.0 / (1.0 + exp(-a)) : tanh(a);
            }
        for (int i = 0; i < H; i++) carry[i] = 0.0;
        for (int t = T; t >= 1; t--) {                        /* backward, reverse time */
            for (int i = 0; i < H; i++) dh[i] = carry[i];
            if (all || t == T) {                              /* a loss term at step t */
                int step = all ? t - 1 : 0;
                for (int o = 0; o < O; o++) {
                    double out = bias ? c.v[o] : 0.0;
                    for (int i = 0; i < H; i++) out += V.v[o * H + i] * h[t * H + i];
                    double err = out - ys.v[((size_t)s * S + step) * O + o];
                    loss += half * err * err / count;
                    dout[o] = 2.0 * half * err / count;       /* dL/do_t */
                    if (bias) gc[o] += dout[o];
                    for (int i = 0; i < H; i++) {
                        gV[o * H + i] += dout[o] * h[t * H + i];
                        dh[i] += dout[o] * V.v[o * H + i];    /* through o_t = V h_t + c */
                    }
                }
            }
            for (int i = 0; i < H; i++) {                     /* through h_t = act(a_t) */
                double ht = h[t * H + i];
                da[i] = dh[i] * (sigmoid ? ht * (1.0 - ht) : 1.0 - ht * ht);
                if (bias) gb[i] += da[i];
                for (int d = 0; d < D; d++) gU[i * D + d] += da[i] * xs.v[((size_t)s * T + t - 1) * D + d];
                for (int j = 0; j < H; j++) gW[i * H + j] += da[i] * h[(t - 1) * H + j];
            }
            for (int j = 0; j < H; j++) {                     /* carry to h_{t-1}: W^T da */
                carry[j] = 0.0;
                for (int i = 0; i < H; i++)
#ifdef CLASSIC_BUG
                    carry[j] += W.v[j * H + i] * da[i];       /* W da: rows and columns swapped */
#else
                    carry[j] += W.v[i * H + j] * da[i];
#endif
            }
        }
        for (int i = 0; i < H; i++) gh0[s * H + i] = carry[i];
    }

    FILE *out = fopen(argv[2], "w");
    if (!out) die("cannot write the candidate file");
    fprintf(out, "{\"loss\": %.17g", loss);
    put(out, "grad_U", gU, H, D);
    put(out, "grad_W", gW, H, H);
    put(out, "grad_V", gV, O, H);
    if (bias) { put(out, "grad_b", gb, H, 0); put(out, "grad_c", gc, O, 0); }
    put(out, "grad_h0", gh0, B, H);
    fprintf(out, "\n}\n");
    return fclose(out) == 0 ? 0 : 3;
}
