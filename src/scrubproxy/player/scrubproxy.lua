-- scrubproxy's mpv script. Two modes, chosen by --script-opts:
--   scrubproxy-timeline=<json>  playing proxies: an on-screen line with the source frame,
--       source time and segment; keys that step exactly by frame and by source time;
--       "o" opens the original source at the frame shown.
--   scrubproxy-goto=<seconds>   playing an original: land exactly on the frame whose
--       pts (libavformat's clock) is <seconds>, through mpv's own demuxer-start-time.
local mp = require "mp"
local utils = require "mp.utils"
local options = require "mp.options"
local unpack = unpack or table.unpack

local opts = {timeline = "", ["goto"] = ""}
options.read_options(opts, "scrubproxy")

-- mpv's exact seek drops frames earlier than target - 5 ms: aim 4.9 ms after a frame.
local AIM_AFTER = 0.0049
local MATCH = 1e-4

if opts["goto"] ~= "" then
    local pts = tonumber(opts["goto"])
    local done = false
    mp.register_event("file-loaded", function()
        if done then return end
        done = true
        local start = mp.get_property_number("demuxer-start-time", 0)
        mp.commandv("seek", string.format("%.9f", pts - start + AIM_AFTER), "absolute+exact")
    end)
    return
end
if opts.timeline == "" then return end

-- The timeline, flattened to global arrays (1-based): mpv time, timeline source time,
-- segment index, frame within the segment. Read again when the Player reloads
-- (new frames of a segment being recorded, new segments).
local data, mt, st, seg_of, local_of, n

local function load_timeline()
    local f = io.open(opts.timeline, "r")
    if not f then
        mp.msg.error("scrubproxy: cannot read " .. opts.timeline)
        return false
    end
    data = utils.parse_json(f:read("*a"))
    f:close()
    mt, st, seg_of, local_of = {}, {}, {}, {}
    for si, seg in ipairs(data.segments) do
        for k, t in ipairs(seg.mpv_times) do
            local g = seg.first + k
            mt[g] = t
            st[g] = seg.source_offset + seg.source_times[k]
            seg_of[g] = si
            local_of[g] = k - 1
        end
    end
    n = #mt
    return true
end
if not load_timeline() then return end

-- last index i with arr[i] <= x (1 if none)
local function last_le(arr, x)
    local lo, hi = 1, n
    if arr[1] > x then return 1 end
    while lo < hi do
        local mid = math.floor((lo + hi + 1) / 2)
        if arr[mid] <= x then lo = mid else hi = mid - 1 end
    end
    return lo
end

local function shown()
    local t = mp.get_property_number("time-pos")
    if t == nil then return nil end
    return last_le(mt, t + MATCH)
end

local function go(g)
    if g < 1 then g = 1 end
    if g > n then g = n end
    mp.commandv("seek", string.format("%.9f", mt[g] + AIM_AFTER), "absolute+exact")
end

-- The numbers as the scrubber page shows them: source frame and time, timeline frame of the count, timeline clock.
local function clock(seconds)
    local h = math.floor(seconds / 3600)
    local m = math.floor((seconds % 3600) / 60)
    local s = string.format("%06.3f", seconds % 60)
    if h > 0 then return string.format("%d:%02d:%s", h, m, s) end
    return string.format("%d:%s", m, s)
end

local overlay = mp.create_osd_overlay("ass-events")
local function update()
    local g = shown()
    if g == nil then return end
    local seg = data.segments[seg_of[g]]
    local k = local_of[g]
    overlay.data = string.format("{\\an7\\fs28\\bord2}%s   source frame %d   source time %.3f s   frame %d / %d   at %s",
        seg.name, k, seg.source_times[k + 1], g - 1, n, clock(st[g]))
    overlay:update()
end
mp.observe_property("time-pos", "number", update)
mp.register_script_message("scrubproxy-reload", function() if load_timeline() then update() end end)

-- End: the last frame; while recording, the Player (listening on its IPC socket)
-- then reloads the timeline and moves on to the newest frame published.
local function last_frame()
    go(n)
    if data.live then mp.commandv("script-message", "scrubproxy-live-edge") end
end

local function by_frames(d) return function() mp.set_property_bool("pause", true); local g = shown(); if g then go(g + d) end end end
local function by_seconds(d)
    return function()
        mp.set_property_bool("pause", true)
        local g = shown()
        if g then go(last_le(st, st[g] + d + 1e-6)) end
    end
end

-- J/K/L shuttle: L forward, J reverse, again: twice as fast (up to 8x); K stops; K held + J/L: one frame.
local k_held = false
local function shuttle(dir)
    return function()
        if k_held then by_frames(dir)(); return end
        local backward = mp.get_property("play-direction") == "backward"
        local playing = not mp.get_property_bool("pause")
        local same = playing and (backward == (dir < 0))
        local speed = same and math.min(mp.get_property_number("speed", 1) * 2, 8) or 1
        mp.set_property("play-direction", dir < 0 and "backward" or "forward")
        mp.set_property_number("speed", speed)
        mp.set_property_bool("pause", false)
    end
end
local function stop_key(event)
    if event.event == "down" or event.event == "press" then
        k_held = event.event == "down"
        mp.set_property_bool("pause", true)
    elseif event.event == "up" then
        k_held = false
    end
end
local function play_pause()
    if mp.get_property_bool("pause") then
        mp.set_property("play-direction", "forward")
        mp.set_property_number("speed", 1)
    end
    mp.set_property_bool("pause", not mp.get_property_bool("pause"))
end

local function open_original()
    local g = shown()
    if g == nil then return end
    local seg = data.segments[seg_of[g]]
    if seg.source == nil then
        mp.osd_message("scrubproxy: the source of this segment is unknown")
        return
    end
    local args = {data.mpv, "--pause", "--hr-seek=yes", "--script=" .. data.script,
        string.format("--script-opts=scrubproxy-goto=%.9f", seg.source_pts[local_of[g] + 1])}
    for _, a in ipairs(data.open_args or {}) do table.insert(args, a) end
    table.insert(args, "--")
    table.insert(args, seg.source)
    mp.commandv("run", unpack(args))
    mp.osd_message("opening " .. seg.name .. " at frame " .. local_of[g])
end

-- The same keys as the scrubber page (server/web/app.js); "." and "," are mpv's own frame steps.
mp.add_forced_key_binding("RIGHT", "scrubproxy-next-frame", by_frames(1), {repeatable = true})
mp.add_forced_key_binding("LEFT", "scrubproxy-prev-frame", by_frames(-1), {repeatable = true})
mp.add_forced_key_binding(".", "scrubproxy-next-frame-dot", by_frames(1), {repeatable = true})
mp.add_forced_key_binding(",", "scrubproxy-prev-frame-comma", by_frames(-1), {repeatable = true})
mp.add_forced_key_binding("Shift+RIGHT", "scrubproxy-forward-1s", by_seconds(1), {repeatable = true})
mp.add_forced_key_binding("Shift+LEFT", "scrubproxy-back-1s", by_seconds(-1), {repeatable = true})
mp.add_forced_key_binding("UP", "scrubproxy-forward-10s", by_seconds(10), {repeatable = true})
mp.add_forced_key_binding("DOWN", "scrubproxy-back-10s", by_seconds(-10), {repeatable = true})
mp.add_forced_key_binding("PGDWN", "scrubproxy-forward-10s-page", by_seconds(10), {repeatable = true})
mp.add_forced_key_binding("PGUP", "scrubproxy-back-10s-page", by_seconds(-10), {repeatable = true})
mp.add_forced_key_binding("HOME", "scrubproxy-first-frame", function() go(1) end)
mp.add_forced_key_binding("END", "scrubproxy-last-frame", last_frame)
mp.add_forced_key_binding("SPACE", "scrubproxy-play-pause", play_pause)
mp.add_forced_key_binding("l", "scrubproxy-shuttle-forward", shuttle(1))
mp.add_forced_key_binding("j", "scrubproxy-shuttle-reverse", shuttle(-1))
mp.add_forced_key_binding("k", "scrubproxy-stop", stop_key, {complex = true})
mp.add_forced_key_binding("o", "scrubproxy-open-original", open_original)
