#include "threadpool.h"

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

namespace lowbit {
namespace {

struct Pool {
  std::vector<std::thread> workers;
  std::mutex mu;                 // guards the job fields and generation
  std::condition_variable wake;  // workers wait here for a new generation
  std::condition_variable done;  // the caller waits here for busy == 0
  const std::function<void(int)>* job = nullptr;
  int ntasks = 0;
  std::atomic<int> next{0};
  int busy = 0;                  // workers still inside the current job
  unsigned long generation = 0;
  bool stop = false;
  std::mutex run_mu;             // one parallel_for at a time; others run serially

  void claim_loop(const std::function<void(int)>& fn, int n) {
    for (int t; (t = next.fetch_add(1, std::memory_order_relaxed)) < n;) fn(t);
  }

  void worker() {
    unsigned long seen = 0;
    std::unique_lock<std::mutex> lk(mu);
    for (;;) {
      wake.wait(lk, [&] { return stop || generation != seen; });
      if (stop) return;
      seen = generation;
      const std::function<void(int)>* fn = job;
      int n = ntasks;
      lk.unlock();
      claim_loop(*fn, n);
      lk.lock();
      if (--busy == 0) done.notify_one();
    }
  }

  void resize(int n) {  // n = number of worker threads (caller excluded)
    {
      std::lock_guard<std::mutex> lk(mu);
      stop = true;
    }
    wake.notify_all();
    for (auto& w : workers) w.join();
    workers.clear();
    stop = false;
    for (int i = 0; i < n; i++) workers.emplace_back([this] { worker(); });
  }

  ~Pool() { resize(0); }
};

Pool& pool() {
  static Pool p;
  return p;
}
thread_local bool in_parallel = false;
int g_threads = 0;  // 0 = not initialised yet

void ensure_init() {
  if (g_threads == 0) pool_set_threads(0);
}

}  // namespace

int pool_threads() {
  ensure_init();
  return g_threads;
}

void pool_set_threads(int n) {
  Pool& p = pool();
  std::lock_guard<std::mutex> run(p.run_mu);
  if (n <= 0) n = (int)std::thread::hardware_concurrency();
  if (n <= 0) n = 1;
  if (n > 256) n = 256;
  p.resize(n - 1);
  g_threads = n;
}

void parallel_for(int ntasks, const std::function<void(int)>& fn) {
  ensure_init();
  Pool& p = pool();
  if (ntasks <= 0) return;
  std::unique_lock<std::mutex> run(p.run_mu, std::defer_lock);
  if (ntasks == 1 || g_threads == 1 || in_parallel || !run.try_lock()) {
    for (int t = 0; t < ntasks; t++) fn(t);
    return;
  }
  in_parallel = true;
  {
    std::lock_guard<std::mutex> lk(p.mu);
    p.job = &fn;
    p.ntasks = ntasks;
    p.next.store(0, std::memory_order_relaxed);
    p.busy = (int)p.workers.size();
    p.generation++;
  }
  p.wake.notify_all();
  p.claim_loop(fn, ntasks);
  {
    std::unique_lock<std::mutex> lk(p.mu);
    p.done.wait(lk, [&] { return p.busy == 0; });
    p.job = nullptr;
  }
  in_parallel = false;
}

}  // namespace lowbit
