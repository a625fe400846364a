import VLLMCtlKit

extension CLIContext {
    /// A scaler for the profile's cluster (scale, and the keepers of tunnel and gateway).
    func scaler(_ cluster: ClusterContext) -> Scaler {
        Scaler(
            deployer: Deployer(
                context: cluster.context, config: cluster.config, profile: cluster.profile,
                templates: templates))
    }

    /// The keeper the deployment's settings ask for (`keep: N`), logging to the terminal with
    /// `label`; nil when it has none, or when its settings cannot be read (said so).
    func keeper(_ cluster: ClusterContext, deployment: String, label: String) async -> ReplicaKeeper? {
        let terminal = self.terminal
        do {
            let keeper = try await ReplicaKeeper.configured(
                deployment, scaler: scaler(cluster), onEvent: { terminal.note("\(label): \($0)") })
            if let keeper {
                terminal.note(
                    "\(label): keeping \(keeper.policy.keep) replica\(keeper.policy.keep == 1 ? "" : "s") of `\(keeper.name)` up (keep: \(keeper.policy.keep)); failed ones are resubmitted, at most \(keeper.policy.maxResubmissions) times each per hour."
                )
            }
            return keeper
        } catch {
            terminal.note(
                "\(label): could not read the deployment's settings (\(error)), so failed replicas are not resubmitted."
            )
            return nil
        }
    }
}
