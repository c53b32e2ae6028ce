package portal

import (
	"go.uber.org/zap"

	"github.com/gozone/gozone/phoenix"
)

// Decoder is DecodeGatewayIngress or DecodeClientIngress.
type Decoder func(event string, payload []byte) (Message, error)

// ChannelConfig fills the portal-specific fields of a phoenix.ClientConfig
// for a device channel: URL (apiURL + "/gateway/v2" or "/client/v2"),
// topic, token, User-Agent and the query parameters, recomputed at every
// (re)connect from params so a new public key is picked up. topic is
// TopicGateway or TopicClient. The caller may set the remaining fields
// (MaxPartitionTime, Clock, ...) on the result.
func ChannelConfig(topic, apiURL, token, userAgent string, params func() LoginParams, log *zap.Logger) phoenix.ClientConfig {
	url := ClientChannelURL(apiURL)
	if topic == TopicGateway {
		url = GatewayChannelURL(apiURL)
	}
	return phoenix.ClientConfig{
		URL: url, Token: token, UserAgent: userAgent, Topic: topic, Logger: log,
		Params: func() []phoenix.Param {
			p := params()
			if topic == TopicGateway {
				p.DeviceSerial, p.DeviceUUID, p.IdentifierForVendor, p.FirebaseInstallationID = "", "", "", ""
			}
			return p.Params()
		},
	}
}

// Pump reads c's events until Run returns (the events channel closes),
// keeping the Session in step with the connection (OnJoin after every
// join, which sends set_snownet_capabilities and flushes held candidates;
// OnDisconnect when the connection is lost) and handing every decoded push
// to handle, in order. Unknown events, unknown resource types and obsolete
// events are logged and skipped, as are malformed payloads (counted in the
// log, never printed: they may hold keys). handle runs on Pump's
// goroutine and should not block for long. Call Pump once per client.
func (s *Session) Pump(c *phoenix.Client, decode Decoder, handle func(Message)) {
	defer s.OnDisconnect()
	for ev := range c.Events() {
		switch ev := ev.(type) {
		case *phoenix.Joined:
			if err := s.OnJoin(SendVia(c)); err != nil {
				s.log.Info("portal: post-join sends failed", zap.Error(err))
			}
		case *phoenix.StateChange:
			if ev.State != phoenix.StateJoined {
				s.OnDisconnect()
			}
		case *phoenix.Message:
			m, err := decode(ev.Event, ev.Payload)
			if err != nil {
				if Ignorable(err) {
					s.log.Info("portal: ignoring message", zap.String("event", ev.Event), zap.Error(err))
				} else {
					s.log.Warn("portal: dropping malformed message", zap.String("event", ev.Event), zap.Int("bytes", len(ev.Payload)), zap.Error(err))
				}
				continue
			}
			handle(m)
		case *phoenix.PushFailed:
			s.log.Info("portal: push refused", zap.String("event", ev.Event), zap.Error(ev.Err))
		}
	}
}
