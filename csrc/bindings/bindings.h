// Each C++ component has one bind_<component>.cc defining one function below;
// module.cc (the only PYBIND11_MODULE) calls them all.
#pragma once

#include <pybind11/pybind11.h>

namespace beast {

// A holder's deleter for objects whose destructor joins threads that may wait on Python (an
// inference thread): Python drops them with the GIL held, and the join must not hold it.
template <typename T>
struct ReleaseGilDelete {
  void operator()(T* object) const {
    pybind11::gil_scoped_release nogil;
    delete object;
  }
};

void bind_actor_pool(pybind11::module_& m);
void bind_auth(pybind11::module_& m);
void bind_batching_queue(pybind11::module_& m);
void bind_dynamic_batcher(pybind11::module_& m);
void bind_env_client(pybind11::module_& m);
void bind_env_server(pybind11::module_& m);
void bind_remote_actors(pybind11::module_& m);

}  // namespace beast
