// The CAF actor system the offload runtime's actors and the trainer share:
// two scheduler threads with the sharing policy (the event-based actors only
// route messages and start copies; the actors that block -- nvme_swap, the
// optimizer, the trainer -- are detached and have threads of their own).
#pragma once

#include <memory>

namespace caf {
class actor_system;
class actor_system_config;
}  // namespace caf

namespace dsinf::actors {

class ActorSystem {
 public:
  ActorSystem();
  ~ActorSystem();  // every actor spawned in it must be gone
  ActorSystem(const ActorSystem&) = delete;
  ActorSystem& operator=(const ActorSystem&) = delete;

  caf::actor_system& get() { return *system_; }

 private:
  std::unique_ptr<caf::actor_system_config> config_;
  std::unique_ptr<caf::actor_system> system_;
};

}  // namespace dsinf::actors
