/* AVX2 register tiles on one core, K in L1 (minimum over 3000 repetitions): the ymm counterpart of
 * team's AVX-512 tile probe (docs/performance.md, Xeon), for CPUs without AVX-512. "6x16" is the engine's AVX2 tile today (a 16-lane panel
 * is two ymm per row, 12 accumulators). Usage, from the project's root:
 *   CC=$(dirname "$(readlink -f "$(which swift)")")/clang
 *   $CC -O3 -march=native -o /tmp/tile_probe_avx2 scripts/tile_probe_avx2.c && /tmp/tile_probe_avx2 */
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
#define K 256
/* AVX2 (ymm, 8 lanes): MR rows broadcast, NV ymm columns; MR*NV accumulators */
#define KERNEL(MR,NV) \
__attribute__((noinline)) void k_##MR##x##NV(const float*a,const float*b,float*c){ \
  __m256 acc[MR][NV]; for(int r=0;r<MR;r++)for(int v=0;v<NV;v++)acc[r][v]=_mm256_setzero_ps(); \
  for(int k=0;k<K;k++){ __m256 w[NV]; for(int v=0;v<NV;v++) w[v]=_mm256_loadu_ps(b+k*NV*8+v*8); \
    for(int r=0;r<MR;r++){ __m256 x=_mm256_broadcast_ss(a+r*K+k); for(int v=0;v<NV;v++) acc[r][v]=_mm256_fmadd_ps(x,w[v],acc[r][v]);}} \
  for(int r=0;r<MR;r++)for(int v=0;v<NV;v++)_mm256_storeu_ps(c+(r*NV+v)*8,acc[r][v]); }
KERNEL(6,2) KERNEL(4,3) KERNEL(3,4) KERNEL(6,1) KERNEL(12,1) KERNEL(8,2) KERNEL(5,2) KERNEL(2,6)
typedef void(*kf)(const float*,const float*,float*);
int main(){
  float*a=aligned_alloc(64,64*K*4),*b=aligned_alloc(64,K*64*4),*c=aligned_alloc(64,64*64*4);
  for(int i=0;i<64*K;i++)a[i]=1e-3f*(i%7);for(int i=0;i<K*64;i++)b[i]=1e-3f*(i%5);
  struct {kf f;int mr,nv;const char*n;} ks[]={{k_6x2,6,2,"6x16 (today)"},{k_4x3,4,3,"4x24"},{k_3x4,3,4,"3x32"},{k_6x1,6,1,"6x8"},{k_12x1,12,1,"12x8"},{k_8x2,8,2,"8x16"},{k_5x2,5,2,"5x16"},{k_2x6,2,6,"2x48"}};
  for(int j=0;j<8;j++){ double best=1e9; for(int rep=0;rep<3000;rep++){double t=now(); for(int i=0;i<20;i++) ks[j].f(a,b,c); t=now()-t; if(t<best)best=t;}
    double flops=20.0*2*ks[j].mr*ks[j].nv*8*K; printf("%-13s %2d acc  %6.1f GFLOP/s/core\n",ks[j].n,ks[j].mr*ks[j].nv,flops/best/1e9);}
  return 0;}
