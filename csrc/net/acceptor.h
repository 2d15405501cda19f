// Acceptor: the accept loop every Beast server shares (the env server, the
// learner's actor server). It takes connections from a Listener and serves
// each on a thread of its own, within a connection limit.
//
//   Acceptor acceptor(Listener::listen(address), limits, serve, log);
//   acceptor.start();            // serve(socket, peer) runs per connection
//   ...
//   acceptor.close();            // stops accepting, wakes and joins them all
//
// `serve` runs on the connection's thread and owns the conversation
// (handshake, errors, last words); when it returns, the acceptor releases the
// fd at once (under its mutex, so close() never shuts down a number the
// kernel has reused) and the accept thread joins the thread when next woken.
// At the limit, a new connection is answered with ERROR (without waiting) and
// closed; running out of fds (EMFILE) is logged once and retried every 100 ms.
//
// Threads: one accept thread; one thread per connection. num_connections()
// and closing() may be called from any thread; close() from any thread but a
// connection's, idempotently.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "net/socket.h"

namespace beast {

struct AcceptorLimits {
  std::int64_t max_connections = 128;
  // Shown in the log line when the limit is reached, e.g. "--max-connections".
  std::string limit_flag = "--max-connections";
};

class Acceptor {
 public:
  using Serve = std::function<void(Socket& socket, const std::string& peer)>;
  using Log = std::function<void(const std::string&)>;

  Acceptor(Listener listener, AcceptorLimits limits, Serve serve, Log log);
  ~Acceptor();
  Acceptor(const Acceptor&) = delete;
  Acceptor& operator=(const Acceptor&) = delete;

  void start();
  const Address& address() const { return listener_.address(); }
  std::int64_t num_connections() const;
  bool closing() const { return closing_; }
  void close();

 private:
  struct Connection {
    Socket socket;
    std::thread thread;
    std::atomic<bool> done{false};
  };
  void accept_loop();
  void admit(Socket socket);
  void reap_finished();
  void wait_for_wake(int ms);
  void run(Connection& connection);
  void wake();

  const AcceptorLimits limits_;
  const Serve serve_;
  const Log log_;
  Listener listener_;
  int wake_read_ = -1;   // self-pipe (non-blocking): close() and finished
  int wake_write_ = -1;  // connections write, the accept thread polls
  bool at_limit_ = false;     // accept thread only: refusing at max_connections
  std::int64_t refused_ = 0;  // accept thread only: refused since at_limit_ began
  mutable std::mutex mu_;     // guards connections_ (the list, not what its threads do)
  std::list<std::unique_ptr<Connection>> connections_;
  std::atomic<bool> closing_{false};
  std::once_flag close_once_;
  std::thread accept_thread_;
};

}  // namespace beast
