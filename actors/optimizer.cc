#include "actors/optimizer.h"

#include "actors/messages.h"
#include "actors/system.h"
#include "caf/all.hpp"

namespace dsinf::actors {

struct OptimizerActor::Impl {
  std::unique_ptr<ActorSystem> own_system;  // when create() was given none
  optimizer_actor actor;
  // Messages sent and handled: the trainer waits for the two to meet.
  std::mutex mu;
  std::condition_variable idle_cv;
  uint64_t sent = 0;     // guarded by mu
  uint64_t handled = 0;  // guarded by mu

  void sending() {
    std::lock_guard<std::mutex> lock(mu);
    ++sent;
  }
  void done() {
    {
      std::lock_guard<std::mutex> lock(mu);
      ++handled;
    }
    idle_cv.notify_all();
  }
};

namespace {

optimizer_actor::behavior_type optimizer(optimizer_actor::pointer self, OptimizerWork* work,
                                         OptimizerActor::Impl* impl) {
  (void)self;
  return {
      [=](preload_atom) {
        work->preload();
        impl->done();
      },
      [=](step_atom, double lr, int64_t step, float grad_scale) {
        work->run(lr, step, grad_scale);
        impl->done();
      },
      [=](cancel_atom) {
        work->cancel();
        impl->done();
      },
  };
}

}  // namespace

OptimizerActor::OptimizerActor(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

absl::StatusOr<std::unique_ptr<OptimizerActor>> OptimizerActor::create(OptimizerWork* work,
                                                                       ActorSystem* system) {
  auto impl = std::make_unique<Impl>();
  if (system == nullptr) {
    impl->own_system = std::make_unique<ActorSystem>();
    system = impl->own_system.get();
  }
  impl->actor = system->get().spawn<caf::detached>(optimizer, work, impl.get());
  return std::unique_ptr<OptimizerActor>(new OptimizerActor(std::move(impl)));
}

OptimizerActor::~OptimizerActor() {
  wait_idle();
  caf::anon_send_exit(impl_->actor, caf::exit_reason::user_shutdown);
  {
    caf::scoped_actor self(impl_->actor->home_system());
    self->wait_for(impl_->actor);
  }
  impl_->actor = nullptr;
  impl_->own_system.reset();
}

void OptimizerActor::preload() {
  impl_->sending();
  caf::anon_send(impl_->actor, preload_atom::value);
}

void OptimizerActor::step(double lr, int64_t step, float grad_scale) {
  impl_->sending();
  caf::anon_send(impl_->actor, step_atom::value, lr, step, grad_scale);
}

void OptimizerActor::cancel() {
  impl_->sending();
  caf::anon_send(impl_->actor, cancel_atom::value);
}

void OptimizerActor::wait_idle() {
  std::unique_lock<std::mutex> lock(impl_->mu);
  impl_->idle_cv.wait(lock, [&] { return impl_->handled == impl_->sent; });
}

}  // namespace dsinf::actors
