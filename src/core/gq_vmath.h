#ifndef GQ_VMATH_H
#define GQ_VMATH_H
/* Vectorised exp and softmax with a scalar reference of the same arithmetic.
 *
 * Every function here has one definition of its result: a fixed sequence of IEEE single
 * operations (fma included), so the AVX2 path and the scalar reference give the same bits on
 * any machine, and a row's result never depends on how rows are spread over threads.
 *
 * exp(x): n = rint(x log2 e), r = x - n ln2 (two-part ln2, fma), p = degree-7 Taylor
 * polynomial of e^r (|r| <= ln2/2, truncation below 1e-8 relative), then p * 2^n applied as two
 * power-of-two factors. Below ln 2^-126 (x < -87.33654) the result is 0 instead of a subnormal:
 * such a softmax term cannot change a sum >= 1, and subnormal operands take microcode assists
 * on x86 in this and every later product. Above 88.75 the input is clamped (the result
 * overflows to +inf); NaN stays NaN. Error within 2 ulp of the correctly rounded value. */

/* The scalar reference of one element. */
float gq_expf_ref(float x);

/* y[i] = gq_expf_ref(x[i]) for i < n (y may equal x). */
void gq_vexpf(float *y, const float *x, int n);

/* Exponentials of a causal row: row[j] = exp(row[j] - max(row[0..n))) for j < n and 0 for
 * n <= j < len (1 <= n <= len); returns their sum, taken in 8 lanes (element j in lane j % 8,
 * increasing j) reduced as ((l0+l4)+(l2+l6))+((l1+l5)+(l3+l7)). */
float gq_exp_row(float *row, int n, int len);
float gq_exp_row_ref(float *row, int n, int len);

/* Causal softmax row: row[0..n) becomes softmax(row[0..n)) and row[n..len) becomes 0
 * (1 <= n <= len): gq_exp_row, then every element times 1/sum. */
void gq_softmax_row(float *row, int n, int len);
/* The same in plain scalar code (the reference the vector path is tested against). */
void gq_softmax_row_ref(float *row, int n, int len);

/* Double exp by the same scheme: degree-13 Taylor polynomial, fdlibm's two-part ln 2, 0 below
 * -708 (no subnormals), inputs clamped at 709.5; within 1.5 ulp of libm's exp. */
double gq_exp_ref(double x);

/* Log-sum-exp of a row of logits in double, max + log(sum exp(x[i] - max)) (max in float, as
 * the logits), the sum in 8 lanes reduced as in gq_exp_row; *argmax = first index of the max
 * (NaN entries skipped). */
double gq_lse_row(const float *x, int n, int *argmax);
double gq_lse_row_ref(const float *x, int n, int *argmax);

#endif
