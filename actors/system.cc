#include "actors/system.h"

#include "caf/all.hpp"

namespace dsinf::actors {

ActorSystem::ActorSystem() : config_(std::make_unique<caf::actor_system_config>()) {
  // Two scheduler threads: the event-based actors only route messages and
  // start copies.
  config_->set("scheduler.max-threads", 2);
  // Sharing, not work stealing: the actors sit idle between messages, and a
  // shared queue wakes a worker in about half the time (a fetch round trip of
  // ~45 us instead of ~100 us here) without polling cores the model computes on.
  config_->set("scheduler.policy", caf::atom("sharing"));
  config_->set("logger.verbosity", caf::atom("quiet"));
  system_ = std::make_unique<caf::actor_system>(*config_);
}

ActorSystem::~ActorSystem() {
  system_->await_all_actors_done();
  system_.reset();
}

}  // namespace dsinf::actors
