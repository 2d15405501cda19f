#include "net/acceptor.h"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "net/wire.h"

namespace beast {

Acceptor::Acceptor(Listener listener, AcceptorLimits limits, Serve serve, Log log)
    : limits_(std::move(limits)), serve_(std::move(serve)), log_(std::move(log)), listener_(std::move(listener)) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) throw SocketError("pipe2 failed");
  wake_read_ = fds[0];
  wake_write_ = fds[1];
}

Acceptor::~Acceptor() {
  close();
  ::close(wake_read_);
  ::close(wake_write_);
}

void Acceptor::start() { accept_thread_ = std::thread([this] { accept_loop(); }); }

std::int64_t Acceptor::num_connections() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::int64_t n = 0;
  for (const auto& c : connections_) n += c->done ? 0 : 1;
  return n;
}

void Acceptor::wake() {
  const char byte = 1;
  // A full pipe (EAGAIN) already holds a wakeup; nothing is lost.
  while (::write(wake_write_, &byte, 1) < 0 && errno == EINTR) {
  }
}

void Acceptor::wait_for_wake(int ms) {
  pollfd p{wake_read_, POLLIN, 0};
  ::poll(&p, 1, ms);
  char drain[256];
  while (::read(wake_read_, drain, sizeof(drain)) > 0) {
  }
}

void Acceptor::close() {
  std::call_once(close_once_, [this] {
    closing_ = true;
    wake();
    if (accept_thread_.joinable()) accept_thread_.join();
    listener_.close();
    std::list<std::unique_ptr<Connection>> connections;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (auto& c : connections_) c->socket.shutdown();  // wakes each connection's blocked recv or send
      connections.swap(connections_);
    }
    for (auto& c : connections) c->thread.join();
  });
}

void Acceptor::accept_loop() {
  bool out_of_fds = false;  // logged once per shortage, not once per retry
  while (!closing_) {
    reap_finished();
    Listener::Accepted accepted;
    try {
      accepted = listener_.accept(wake_read_);
    } catch (const std::exception& e) {
      log_(std::string("stopped accepting connections: ") + e.what());
      return;
    }
    if (accepted.out_of_fds != 0) {
      if (!out_of_fds) {
        log_(std::string("out of file descriptors (") + std::strerror(accepted.out_of_fds) + ") with " +
             std::to_string(num_connections()) + " connections open: new ones wait until some close (see " +
             limits_.limit_flag + " and ulimit -n)");
      }
      out_of_fds = true;
      wait_for_wake(100);  // the pending connection keeps the listener readable: do not spin
      continue;
    }
    if (!accepted.socket) {  // woken: closing, or a connection finished
      wait_for_wake(0);
      continue;
    }
    if (out_of_fds) log_("file descriptors available again: accepting connections");
    out_of_fds = false;
    admit(std::move(*accepted.socket));
  }
}

void Acceptor::admit(Socket socket) {
  if (num_connections() >= limits_.max_connections) {
    if (!at_limit_) {
      log_("at the connection limit (" + std::to_string(limits_.max_connections) + ", " + limits_.limit_flag +
           "): refusing new connections");
    }
    at_limit_ = true;
    ++refused_;
    try {  // never blocks the accept thread: a deadline of now sends only what fits at once
      write_frame(socket, FrameType::kError,
                  error_arrays("the server is at its connection limit (" + std::to_string(limits_.max_connections) +
                               " connections); try again later"),
                  Clock::now());
    } catch (const std::exception&) {
    }
    return;  // the socket closes here
  }
  if (at_limit_) {
    log_("below the connection limit again; refused " + std::to_string(refused_) + " connections meanwhile");
    at_limit_ = false;
    refused_ = 0;
  }
  auto connection = std::make_unique<Connection>();
  connection->socket = std::move(socket);
  Connection* c = connection.get();
  std::lock_guard<std::mutex> lock(mu_);
  connections_.push_back(std::move(connection));
  c->thread = std::thread([this, c] { run(*c); });
}

void Acceptor::reap_finished() {
  std::list<std::unique_ptr<Connection>> finished;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = connections_.begin(); it != connections_.end();) {
      if ((*it)->done) {
        finished.push_back(std::move(*it));
        it = connections_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (auto& c : finished) c->thread.join();  // done: returns at once
}

void Acceptor::run(Connection& c) {
  serve_(c.socket, c.socket.peer_name());
  {
    std::lock_guard<std::mutex> lock(mu_);
    c.socket.close();
    c.done = true;
  }
  wake();  // the accept thread joins this thread
}

}  // namespace beast
