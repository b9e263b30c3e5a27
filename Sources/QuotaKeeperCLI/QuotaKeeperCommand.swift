import ArgumentParser
import QuotaKeeper

/// `quotakeeper`: see, change and reset the fleet's budgets and breakers.
@main
struct QuotaKeeperCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "quotakeeper",
        abstract: "See, change and reset the fleet's Bedrock budgets and breakers."
    )
}
