#!/usr/bin/env node
// A minimal ctlfs runtime written with kafkajs, from docs/manual.md
// ("Integrating your own runtime") and the message formats of SPEC.md only:
// no code of ctlfs is used. tests/mount/test_interop.py drives it.
//
//   node runtime.js --brokers=HOST:PORT --runtime=RT --resource=NAME...
//        [--heartbeat-ms=2500] [--topic-prefix=ctlfs] [--group=ID]
//        [--max-wait-ms=20] [--initial-state=running]
//
// It consumes every partition of PREFIX.RT.commands (kafkajs's consumer group
// assigns them all to this one member), applies pause/resume/start/stop to
// in-memory resources once per command id, and produces feedback on
// PREFIX.RT.feedback keyed by resource with kafkajs's default partitioner
// (murmur2, as Java clients): on every change, and as a heartbeat for every
// resource every --heartbeat-ms. stdout gets one line, "ready", once the
// consumer runs and the initial feedback is acknowledged; the rest goes to
// stderr, one line per event: "applied id=... resource=... verb=... state=...
// partition=... offset=...". Every report carries the feedback's optional
// metrics object: {"commands_applied": N} for the resource.
'use strict'

const { Kafka, Partitioners, logLevel } = require('kafkajs')

const VERB_STATE = { pause: 'paused', resume: 'running', start: 'running', stop: 'stopped' }

function parseArgs (argv) {
  const opt = {
    resources: [],
    heartbeatMs: 2500,
    topicPrefix: 'ctlfs',
    maxWaitMs: 20,
    initialState: 'running'
  }
  for (const arg of argv) {
    const m = /^--([a-z-]+)=(.*)$/.exec(arg)
    if (!m) throw new Error(`unexpected argument ${arg}`)
    const [, key, value] = m
    if (key === 'brokers') opt.brokers = value.split(',')
    else if (key === 'runtime') opt.runtime = value
    else if (key === 'resource') opt.resources.push(value)
    else if (key === 'heartbeat-ms') opt.heartbeatMs = Number(value)
    else if (key === 'topic-prefix') opt.topicPrefix = value
    else if (key === 'group') opt.group = value
    else if (key === 'max-wait-ms') opt.maxWaitMs = Number(value)
    else if (key === 'initial-state') opt.initialState = value
    else throw new Error(`unknown option --${key}`)
  }
  if (!opt.brokers || !opt.runtime) throw new Error('--brokers and --runtime are required')
  // A stable group, as a real runtime would have: a restart reads on from the
  // offsets committed for it instead of replaying the topic.
  opt.group = opt.group || `ctlfs-runtime.${opt.runtime}`
  return opt
}

function log (line) {
  process.stderr.write(`${new Date().toISOString()} ${line}\n`)
}

class Runtime {
  constructor (opt) {
    this.opt = opt
    this.commandTopic = `${opt.topicPrefix}.${opt.runtime}.commands`
    this.feedbackTopic = `${opt.topicPrefix}.${opt.runtime}.feedback`
    this.states = new Map(opt.resources.map(r => [r, opt.initialState]))
    this.seen = new Set() // command ids applied (or refused) by this process
    this.applied = new Map() // resource -> commands applied: reported as a metric
    const kafka = new Kafka({
      clientId: `ctlfs-interop-${opt.runtime}`,
      brokers: opt.brokers,
      logLevel: logLevel.WARN,
      logCreator: () => ({ namespace, level, log: entry }) =>
        log(`kafkajs level=${level} ${namespace}: ${entry.message}`)
    })
    // kafkajs's default partitioner (murmur2 of the key, as Java clients), named
    // only to silence its warning about the v2 change of default.
    this.producer = kafka.producer({
      createPartitioner: Partitioners.DefaultPartitioner,
      allowAutoTopicCreation: true
    })
    this.consumer = kafka.consumer({
      groupId: opt.group,
      // The broker answers a fetch when data arrives, or after this long.
      // librdkafka's mock cluster (ctlfs-broker) always waits the whole time,
      // so this is the floor of the command latency there; against a real
      // Kafka it only sets how often an idle consumer asks again.
      maxWaitTimeInMs: opt.maxWaitMs,
      allowAutoTopicCreation: true,
      // Partitions added to the command topic are found as soon as ctlfs
      // finds them (10 s), not after kafkajs's default 5 minutes.
      metadataMaxAge: 10000
    })
  }

  async report (resource, commandId, message) {
    await this.producer.send({ topic: this.feedbackTopic, messages: [this.feedback(resource, commandId, message)] })
  }

  feedback (resource, commandId, message) {
    const value = { resource, state: this.states.get(resource), ts: new Date().toISOString() }
    if (commandId) value.command_id = commandId
    if (message) value.message = message
    value.metrics = { commands_applied: this.applied.get(resource) || 0 }
    return { key: resource, value: JSON.stringify(value), headers: { 'ctlfs-version': '1' } }
  }

  async heartbeat () {
    const messages = [...this.states.keys()].map(r => this.feedback(r))
    if (messages.length > 0) await this.producer.send({ topic: this.feedbackTopic, messages })
  }

  // Decides what to do with one command; returns [resource, id, message] to
  // report, or null when there is nothing to report.
  apply (cmd, where) {
    if (cmd.runtime !== this.opt.runtime) {
      log(`skipped id=${cmd.id} ${where}: runtime ${cmd.runtime} is not ${this.opt.runtime}`)
      return null
    }
    if (!this.states.has(cmd.resource)) {
      log(`skipped id=${cmd.id} ${where}: resource ${cmd.resource} is not handled here`)
      return null
    }
    if (this.seen.has(cmd.id)) {
      log(`duplicate id=${cmd.id} ${where}: not applied again`)
      return null
    }
    this.seen.add(cmd.id)
    if (cmd.expires_at && Date.parse(cmd.expires_at) < Date.now()) {
      log(`expired id=${cmd.id} ${where}`)
      return [cmd.resource, cmd.id, 'command expired before it was received']
    }
    const target = VERB_STATE[cmd.verb]
    if (!target) {
      log(`failed id=${cmd.id} ${where}: verb ${cmd.verb} not supported`)
      return [cmd.resource, cmd.id, `verb ${cmd.verb} not supported`]
    }
    this.states.set(cmd.resource, target)
    this.applied.set(cmd.resource, (this.applied.get(cmd.resource) || 0) + 1)
    log(`applied id=${cmd.id} resource=${cmd.resource} verb=${cmd.verb} state=${target} ${where}`)
    return [cmd.resource, cmd.id, null]
  }

  async onMessage ({ partition, message }) {
    const where = `partition=${partition} offset=${message.offset}`
    const version = message.headers && message.headers['ctlfs-version']
    if (version !== undefined && version.toString() !== '1') {
      log(`skipped ${where}: ctlfs-version ${version}`)
      return
    }
    let cmd
    try {
      cmd = JSON.parse(message.value.toString('utf8'))
    } catch (e) {
      log(`malformed ${where}: ${e.message}`)
      return
    }
    if (typeof cmd !== 'object' || cmd === null || typeof cmd.id !== 'string') {
      log(`malformed ${where}: not a command`)
      return
    }
    const outcome = this.apply(cmd, where)
    if (outcome) await this.report(...outcome)
  }

  async start () {
    await this.producer.connect()
    await this.consumer.connect()
    const joined = new Promise(resolve => this.consumer.on(this.consumer.events.GROUP_JOIN, e => {
      log(`joined group=${this.opt.group} assignment=${JSON.stringify(e.payload.memberAssignment)}`)
      resolve()
    }))
    // From the beginning when the group has no offsets yet: commands written
    // before this runtime first joined are not lost.
    await this.consumer.subscribe({ topics: [this.commandTopic], fromBeginning: true })
    await this.consumer.run({ eachMessage: m => this.onMessage(m) })
    await joined
    await this.heartbeat() // the initial state of every resource
    if (this.opt.heartbeatMs > 0) {
      this.timer = setInterval(() => this.heartbeat().catch(e => log(`heartbeat: ${e.message}`)),
        this.opt.heartbeatMs)
    }
    log(`ready runtime=${this.opt.runtime} commands=${this.commandTopic} feedback=${this.feedbackTopic}`)
    process.stdout.write('ready\n')
  }

  async stop () {
    clearInterval(this.timer)
    await this.consumer.disconnect() // commits, and leaves the group at once
    await this.producer.disconnect()
  }
}

async function main () {
  let opt
  try {
    opt = parseArgs(process.argv.slice(2))
  } catch (e) {
    process.stderr.write(`runtime.js: ${e.message}\n`)
    process.exit(2)
  }
  const rt = new Runtime(opt)
  let stopping = false
  const stop = async () => {
    if (stopping) return
    stopping = true
    log('signal: stopping')
    try {
      await rt.stop()
    } finally {
      log('stopped')
      process.exit(0)
    }
  }
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
  try {
    await rt.start()
  } catch (e) {
    log(`fatal: ${e.stack || e.message}`)
    process.exit(1)
  }
}

main()
