#include "actors/trainer.h"

#include <string>

#include "actors/messages.h"
#include "actors/system.h"
#include "caf/all.hpp"

namespace dsinf::actors {

struct TrainerActor::Impl {
  std::unique_ptr<caf::scoped_actor> self;  // the session's thread
  trainer_actor actor;
};

namespace {

trainer_actor::behavior_type trainer(trainer_actor::pointer self, TrainerActor::StepFn step) {
  (void)self;
  return {
      [step](step_atom, int64_t index) -> caf::result<int, std::string> {
        const absl::Status s = step(index);
        return {static_cast<int>(s.code()), std::string(s.message())};
      },
  };
}

}  // namespace

TrainerActor::TrainerActor(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

std::unique_ptr<TrainerActor> TrainerActor::create(ActorSystem& system, StepFn step) {
  auto impl = std::make_unique<Impl>();
  impl->self = std::make_unique<caf::scoped_actor>(system.get());
  impl->actor = system.get().spawn<caf::detached>(trainer, std::move(step));
  return std::unique_ptr<TrainerActor>(new TrainerActor(std::move(impl)));
}

TrainerActor::~TrainerActor() {
  caf::anon_send_exit(impl_->actor, caf::exit_reason::user_shutdown);
  (*impl_->self)->wait_for(impl_->actor);
}

absl::Status TrainerActor::step(int64_t index) {
  absl::Status status;
  (*impl_->self)
      ->request(impl_->actor, caf::infinite, step_atom::value, index)
      .receive(
          [&](int code, const std::string& message) {
            status = absl::Status(static_cast<absl::StatusCode>(code), message);
          },
          [&](caf::error& e) {
            status = absl::InternalError("the trainer actor failed: " +
                                         (*impl_->self)->system().render(e));
          });
  return status;
}

}  // namespace dsinf::actors
