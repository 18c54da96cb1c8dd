// `cnnviz serve`'s HTTP side: the page (assets/serve/, embedded at build
// time) and the JSON API under /api/ over an Explorer (explorer.h). See
// docs/serve.md. cpp-httplib stays inside server.cpp.
#ifndef CNNVIZ_SERVE_SERVER_H_
#define CNNVIZ_SERVE_SERVER_H_

#include <memory>
#include <string>

#include "cnnviz/run/explorer.h"

namespace cnnviz {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;  // 0: any free port
  // Required on every /api/ request when not empty (header X-Cnnviz-Token
  // or query parameter token). Without one the server answers only requests
  // whose Host header names a loopback address (no DNS rebinding).
  std::string token;
  std::string assets_dir;  // read the page's files from here at each request (development)
  int threads = 16;        // connections served at once
};

class Server {
 public:
  Server(Explorer& explorer, ServerOptions options);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds the address; returns the port. Throws Error(kUsage) naming the
  // address when it cannot be bound.
  int bind();
  // Serves until stop(); returns when the listening loop has ended.
  void run();
  // From any thread (a signal watcher): ends run().
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// True for 127.0.0.0/8, ::1 and "localhost".
bool is_loopback_host(const std::string& host);

// 32 random hex digits from the system's random source.
std::string make_token();

}  // namespace cnnviz

#endif  // CNNVIZ_SERVE_SERVER_H_
