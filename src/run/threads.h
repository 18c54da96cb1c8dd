// What the run's helper threads (decoders, writers) share.
#ifndef CNNVIZ_RUN_THREADS_H_
#define CNNVIZ_RUN_THREADS_H_

namespace cnnviz {

// CPU time the calling thread has used, in ms.
double thread_cpu_ms();

// Lowers the calling thread's priority to nice 10. When every core is busy,
// the scheduler then preempts a decoder or writer rather than one thread of
// the network's OpenMP team, which would stall the whole team at its next
// barrier (measured on 2 cores: classify 3-5% faster with nice decoders;
// with writers at nice 0, a gradcam --all-layers run's compute took 1.8x as
// long). Failure is harmless.
void lower_thread_priority();

}  // namespace cnnviz

#endif  // CNNVIZ_RUN_THREADS_H_
